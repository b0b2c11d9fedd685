"""Crash-safe retry jobs that outlive a process (``pip install "postman-async[taskiq]"``).

A job's input, leases, journal and results live in Redis (:class:`JobStore`); any engine
delivers its chunks (taskiq with the Redis Stream broker in :mod:`.taskiq_app`); a plain
coroutine runs one chunk (:func:`run_chunk`). See the README, "Retry jobs".
"""

from .durability import durability_warnings
from .reconcile import Intent, Verdict, reconcile
from .runner import ChunkStatus, JobHooks, LeaseLost, run_chunk
from .store import JobError, JobProgress, JobSettings, JobStore, active_jobs
from .submit import submit_job
from .supervisor import supervise_once

__all__ = [
    "ChunkStatus",
    "Intent",
    "JobError",
    "JobHooks",
    "JobProgress",
    "JobSettings",
    "JobStore",
    "LeaseLost",
    "Verdict",
    "active_jobs",
    "durability_warnings",
    "reconcile",
    "run_chunk",
    "submit_job",
    "supervise_once",
]
