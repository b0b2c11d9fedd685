"""A worker process for the multi-process test: one client of the shared campaign, its
budget enforced through Redis, calling as fast as it is allowed for a while."""

from __future__ import annotations

import asyncio
import time

from postman_async import PostmanClient, Priority
from postman_async.ratelimit_redis import RedisRateLimiter


async def _work(
    redis_url: str,
    base_url: str,
    campaign: str,
    key: str,
    rate: float,
    start_at: float,
    seconds: float,
    priority: Priority,
) -> int:
    limiter = RedisRateLimiter(redis_url, campaign_id=campaign, rate=rate)
    calls = 0
    async with PostmanClient(
        api_key=key, campaign_id=campaign, base_url=base_url, limiter=limiter
    ) as client:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        deadline = start_at + seconds

        async def caller() -> None:
            nonlocal calls
            while time.time() < deadline:
                await client.list_messages(page_size=1, priority=priority).fetch()
                calls += 1

        await asyncio.gather(*(caller() for _ in range(5)))
    await limiter.aclose()
    return calls


def run(
    redis_url: str,
    base_url: str,
    campaign: str,
    key: str,
    rate: float,
    start_at: float,
    seconds: float,
    bulk: bool,
) -> int:
    priority = Priority.BULK if bulk else Priority.HIGH
    return asyncio.run(_work(redis_url, base_url, campaign, key, rate, start_at, seconds, priority))
