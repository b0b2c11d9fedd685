"""Re-kick stalled chunks: the engine only delivers work, so a lost or duplicated delivery must
not change a job's outcome. Any worker runs this periodically; each stalled chunk (not done,
no live lease) is claimed for twice the job's lease TTL in Redis, so concurrent supervisors
kick it once."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .store import NAMESPACE, JobStore, active_jobs

try:
    import redis.asyncio as aioredis
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('retry jobs need redis-py: pip install "postman-async[taskiq]"') from exc

logger = logging.getLogger("postman_async")

Kick = Callable[[str, int], Awaitable[None]]


async def supervise_once(
    redis: aioredis.Redis,
    kick: Kick,
    *,
    namespace: str = NAMESPACE,
    serves: frozenset[str] | None = None,
) -> int:
    """Kick every stalled chunk of every active job once (``serves``: only of jobs for these
    campaigns); returns how many were kicked."""
    kicked = 0
    for job_id in await active_jobs(redis, namespace):
        store = JobStore(redis, job_id, namespace=namespace)
        if serves is not None:
            campaign: Any = await redis.hget(store.key("meta"), "campaign_id")
            if campaign is None or campaign.decode() not in serves:
                continue
        for chunk in await store.run("CLAIM_STALLED"):
            await kick(job_id, int(chunk))
            kicked += 1
    if kicked:
        logger.info("supervisor: re-kicked %d stalled chunk(s)", kicked)
    return kicked
