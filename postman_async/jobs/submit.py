"""Submitting a job: create it, stream its input in, seal it, and deliver its chunks."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable

from ..reports import MessageState
from .durability import warn_if_not_durable
from .records_local import LocalJobRecords
from .store import JobProgress, JobSettings, JobStore
from .supervisor import Kick

try:
    import redis.asyncio as aioredis
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('retry jobs need redis-py: pip install "postman-async[taskiq]"') from exc


async def submit_job(
    redis: aioredis.Redis,
    job_id: str,
    ids: Iterable[object] | AsyncIterable[object],
    settings: JobSettings,
    *,
    known: dict[str, MessageState] | None = None,
    kick: Kick | None = None,
    records: LocalJobRecords | None = None,
) -> JobProgress:
    """Create (or resume feeding) ``job_id``, stream ``ids`` into it, seal it and deliver
    every chunk (``kick``: the taskiq task by default). Safe to run again after a crash: the
    input already taken is skipped, and nothing is submitted twice. ``records``: this host's
    records of its jobs (:class:`LocalJobRecords`), so that a job Redis lost whole is
    recognised and submitted again read-first."""
    if kick is None:
        from .taskiq_app import kick as taskiq_kick

        kick = taskiq_kick
    await warn_if_not_durable(redis)
    store = JobStore(redis, job_id, records=records)
    await store.create(settings)
    await store.submit(ids, known=known, seal=True)
    for chunk in await store.run("CLAIM_STALLED"):
        await kick(job_id, int(chunk))
    return await store.progress()
