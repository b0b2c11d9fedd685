"""RedisRateLimiter against a real redis-server: one budget for many processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from benchmarks.distributed import worker
from postman_async import Priority, RateLimiterUnavailableError
from postman_async.ratelimit_redis import RedisRateLimiter
from postman_async.testing import PostmanSimulator
from postman_async.testing.process import free_port
from postman_async.testing.server_limits import max_in_window

from .conftest import RedisServer


async def _grants(
    limiters: list[RedisRateLimiter],
    seconds: float,
    per_limiter: int,
    priority: Priority = Priority.HIGH,
) -> list[float]:
    times: list[float] = []
    deadline = time.monotonic() + seconds

    async def worker(limiter: RedisRateLimiter) -> None:
        while time.monotonic() < deadline:
            await limiter.acquire(priority)
            times.append(time.monotonic())

    await asyncio.gather(*(worker(lim) for lim in limiters for _ in range(per_limiter)))
    return sorted(times)


async def test_many_limiters_share_one_budget(redis_server: RedisServer) -> None:
    limiters = [RedisRateLimiter(redis_server.url, campaign_id="c1", rate=50) for _ in range(4)]
    try:
        times = await _grants(limiters, 2.0, 5)
        bulk = await _grants(limiters, 1.0, 3, Priority.BULK)
    finally:
        for limiter in limiters:
            await limiter.aclose()
    # The achieved rate is a timing figure: benchmarks/distributed.py measures it.
    assert max_in_window(times) <= 50 and max_in_window(bulk) <= 50
    assert all(lim.grants > 0 for lim in limiters)  # every process got a share


async def test_urgent_call_from_another_process_goes_first(redis_server: RedisServer) -> None:
    bulk = RedisRateLimiter(redis_server.url, campaign_id="c2", rate=20)
    urgent = RedisRateLimiter(redis_server.url, campaign_id="c2", rate=20)
    granted: list[str] = []
    ahead: list[int] = []
    try:
        stop = time.monotonic() + 2.5

        async def bulk_worker() -> None:
            while time.monotonic() < stop:
                await bulk.acquire(Priority.BULK)
                granted.append("bulk")

        async def probe() -> None:
            await asyncio.sleep(0.5)
            for _ in range(6):
                asked = len(granted)
                await urgent.acquire(Priority.HIGH)
                ahead.append(len(granted) - asked)
                await asyncio.sleep(0.23)

        await asyncio.gather(*(bulk_worker() for _ in range(10)), probe())
    finally:
        await bulk.aclose()
        await urgent.aclose()
    # Counted in grants, not wall time: behind ten queued bulk calls it would be ~10.
    assert max(ahead) <= 2, ahead


async def test_a_429_in_one_process_slows_all(redis_server: RedisServer) -> None:
    told: list[float] = []

    async def sleep(delay: float) -> None:
        told.append(delay)
        await asyncio.sleep(delay)

    first = RedisRateLimiter(redis_server.url, campaign_id="c3", rate=100)
    second = RedisRateLimiter(redis_server.url, campaign_id="c3", rate=100, sleep=sleep)
    try:
        await second.acquire()
        await first.penalize(0.5)
        told.clear()
        await second.acquire()
        # Redis (on its own clock) told the other process to wait out the 429's pause.
        assert sum(told) >= 0.45, told
    finally:
        await first.aclose()
        await second.aclose()


async def test_unreachable_redis_is_a_typed_error() -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", campaign_id="c4")
    with pytest.raises(RateLimiterUnavailableError):
        await limiter.acquire()
    await limiter.aclose()


@pytest.mark.parametrize("fallback", [False, True])
async def test_redis_restart_mid_run(redis_server: RedisServer, fallback: bool) -> None:
    rate = 40.0
    limiters = [
        RedisRateLimiter(
            redis_server.url,
            campaign_id="c5",
            rate=rate,
            fallback_rate=rate / 2 if fallback else None,
            retry_interval=0.2,
        )
        for _ in range(2)
    ]
    times: list[float] = []
    errors = 0
    stop = time.monotonic() + 4.5

    async def worker(limiter: RedisRateLimiter) -> None:
        nonlocal errors
        while time.monotonic() < stop:
            try:
                await limiter.acquire()
                times.append(time.monotonic())
            except RateLimiterUnavailableError:
                errors += 1
                await asyncio.sleep(0.05)

    async def outage() -> None:
        await asyncio.sleep(1.0)
        await asyncio.to_thread(redis_server.stop)
        await asyncio.sleep(0.8)
        await asyncio.to_thread(redis_server.start)

    try:
        await asyncio.gather(*(worker(lim) for lim in limiters for _ in range(3)), outage())
    finally:
        for limiter in limiters:
            await limiter.aclose()
    times.sort()
    assert max_in_window(times) <= rate
    assert [t for t in times if t > stop - 1.0]  # shared limiting is back after the outage
    if fallback:
        assert errors == 0 and sum(lim.fallback_grants for lim in limiters) > 0
    else:
        assert errors > 0 and sum(lim.fallback_grants for lim in limiters) == 0


async def test_four_processes_one_campaign_against_the_simulator(
    redis_server: RedisServer,
) -> None:
    rate, seconds = 40.0, 4.0
    async with PostmanSimulator(rate_limit=rate) as sim:
        start_at = time.time() + 2.0  # after the workers have started up
        context = multiprocessing.get_context("spawn")
        loop = asyncio.get_running_loop()
        with ProcessPoolExecutor(max_workers=4, mp_context=context) as pool:
            futures = [
                loop.run_in_executor(
                    pool,
                    worker,
                    redis_server.url,
                    sim.base_url,
                    sim.campaign_id,
                    sim.api_key,
                    rate,
                    start_at,
                    seconds,
                    index % 2 == 1,
                )
                for index in range(4)
            ]
            calls = [c for c, _ in await asyncio.gather(*futures)]
        stats = sim.stats()
        times = sorted(sim.request_times())
    assert all(c > 0 for c in calls) and sum(calls) == stats.requests
    assert stats.throttled == 0
    assert stats.max_per_second <= rate
    assert len(times) == stats.requests  # utilisation is measured by benchmarks/distributed.py


async def test_a_jitter_429_widens_the_margin_every_process_uses(
    redis_server: RedisServer,
) -> None:
    """The learned margin is shared: one process's jitter 429 spaces every process's grants
    wider, without cutting the rate; a 429 with a long Retry-After still halves it."""
    first = RedisRateLimiter(redis_server.url, campaign_id="c6", rate=10)
    second = RedisRateLimiter(redis_server.url, campaign_id="c6", rate=10)

    async def step() -> int:
        """Microseconds between two slots the second process reserves back to back."""
        tat_key = second._keys[0]
        await second._reserve(bulk=False)
        before = int(await second._redis.get(tat_key))
        await second._reserve(bulk=False)
        return int(await second._redis.get(tat_key)) - before

    try:
        for limiter in (first, second):
            for _ in range(20):  # a quiet network: round trips all alike
                limiter.observe(0.002)
        assert await step() == 100_800  # 100 ms at 10/s, plus the 8 ms/s floor
        await first.penalize(0.0, retry_after=1.0)  # the window passing: jitter
        assert await step() == 101_800  # widened by 10 ms/s for every process
        assert first.rate_cuts == 0
        await first.penalize(0.0, retry_after=5.0)  # longer than a window: a competitor
        assert first.rate_cuts == 1
        # halved (and recovering over 30 s: a few ms of test time shave off a few µs)
        assert await step() == pytest.approx(203_600, abs=1000)
    finally:
        await first.aclose()
        await second.aclose()


async def test_a_grant_woken_late_takes_a_fresh_slot(redis_server: RedisServer) -> None:
    """A caller that oversleeps its slot (a busy host) does not send then: it reserves anew,
    so its call cannot squeeze against the slots other processes reserved after it."""
    overslept: list[float] = []

    async def sleepy(delay: float) -> None:
        extra = 0.05 if not overslept else 0.0
        overslept.append(extra)
        await asyncio.sleep(delay + extra)

    limiter = RedisRateLimiter(redis_server.url, campaign_id="c7", rate=10, sleep=sleepy)
    try:
        await limiter.acquire()  # due now: no sleep
        await limiter.acquire()  # due in ~100 ms: woken 50 ms late, so it asks again
        assert limiter.late_requeues == 1 and limiter.grants == 2
        assert overslept[0] == 0.05 and len(overslept) == 2
    finally:
        await limiter.aclose()
