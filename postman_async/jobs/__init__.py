"""Crash-safe retry jobs that outlive a process (``pip install "postman-async[taskiq]"``).

A job's input, leases, journal and results live in Redis (:class:`JobStore`); any engine
delivers its chunks (taskiq with the Redis Stream broker in :mod:`.taskiq_app`); a plain
coroutine runs one chunk (:func:`run_chunk`). A job names a campaign only: each worker sends
with the key and base URL of its own configuration (:class:`WorkerConfig`). See the README,
"Retry jobs".
"""

from .config import CampaignConfig, WorkerConfig, WorkerConfigError
from .durability import durability_warnings
from .reconcile import Intent, Verdict, decide_after_loss, reconcile
from .runner import ChunkStatus, JobHooks, LeaseLost, run_chunk
from .store import (
    LOST_MESSAGE,
    JobCorruptError,
    JobError,
    JobLostError,
    JobProgress,
    JobSettings,
    JobStore,
    active_jobs,
)
from .submit import submit_job
from .supervisor import supervise_once

__all__ = [
    "LOST_MESSAGE",
    "CampaignConfig",
    "ChunkStatus",
    "Intent",
    "JobCorruptError",
    "JobError",
    "JobHooks",
    "JobLostError",
    "JobProgress",
    "JobSettings",
    "JobStore",
    "LeaseLost",
    "Verdict",
    "WorkerConfig",
    "WorkerConfigError",
    "active_jobs",
    "decide_after_loss",
    "durability_warnings",
    "reconcile",
    "run_chunk",
    "submit_job",
    "supervise_once",
]
