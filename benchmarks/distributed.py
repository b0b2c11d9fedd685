"""Many processes, one budget: 4 worker processes share one campaign through Redis
(RedisRateLimiter) against the simulator's strict limiter at the real 10/s. Targets: max <= 10
in any sliding second, achieved >= 9.5/s, zero 429s; and Redis cost per acquire.

    python -m benchmarks.distributed [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import socket
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from postman_async import PostmanClient, Priority
from postman_async.testing import Network, PostmanSimulator
from postman_async.testing.process import free_port

from ._common import table


def worker(
    redis_url: str,
    base_url: str,
    campaign: str,
    key: str,
    rate: float,
    start_at: float,
    seconds: float,
    bulk: bool = False,
) -> tuple[int, list[float]]:
    """One process's client of the shared campaign, calling as fast as Redis allows from
    ``start_at`` (epoch s) for ``seconds``. Returns its calls and Redis round trips (s).
    Also used by tests/distributed."""
    return asyncio.run(_work(redis_url, base_url, campaign, key, rate, start_at, seconds, bulk))


async def _work(
    redis_url: str,
    base_url: str,
    campaign: str,
    key: str,
    rate: float,
    start_at: float,
    seconds: float,
    bulk: bool,
) -> tuple[int, list[float]]:
    from postman_async.ratelimit_redis import RedisRateLimiter

    limiter = RedisRateLimiter(redis_url, campaign_id=campaign, rate=rate)
    priority = Priority.BULK if bulk else Priority.HIGH
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
    return calls, list(limiter.redis_latencies)


async def run(
    seconds: float = 30.0,
    processes: int = 4,
    rate: float = 10.0,
    *,
    network: Network | None = None,
    verbose: bool = True,
) -> dict[str, Any]:
    """``network``: the simulator's one-way delays (``benchmarks.network`` uses 40 ms)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("needs redis-server (apt-get install redis-server)")
    port = free_port()
    redis = await asyncio.create_subprocess_exec(
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        stdout=asyncio.subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                await asyncio.sleep(0.02)
        async with PostmanSimulator(rate_limit=rate, network=network) as sim:
            start_at = time.time() + 2.5
            loop = asyncio.get_running_loop()
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:
                outcomes = await asyncio.gather(
                    *(
                        loop.run_in_executor(
                            pool,
                            worker,
                            f"redis://127.0.0.1:{port}/0",
                            sim.base_url,
                            sim.campaign_id,
                            sim.api_key,
                            rate,
                            start_at,
                            seconds,
                        )
                        for _ in range(processes)
                    )
                )
            stats = sim.stats()
            times = sim.request_times()
    finally:
        redis.terminate()
        await redis.wait()
    latencies = sorted(x for _, lat in outcomes for x in lat)
    result = {
        "processes": processes,
        "requests": stats.requests,
        "per_process": [c for c, _ in outcomes],
        "achieved_rate": round((len(times) - 1) / (times[-1] - times[0]), 3),
        "max_in_sliding_second": stats.max_per_second,
        "throttled_429": stats.throttled,
        "per_1000_429": round(1000 * stats.throttled / max(1, stats.requests), 2),
        "redis_calls_per_grant": round(len(latencies) / max(1, stats.requests), 2),
        "redis_us_median": round(statistics.median(latencies) * 1e6),
        "redis_us_p99": round(latencies[int(len(latencies) * 0.99)] * 1e6),
    }
    if verbose:
        print(
            f"distributed: {processes} processes, one campaign through Redis, {rate:g}/s, "
            f"{seconds:g} s"
        )
        print(table(list(result.items())), flush=True)
    return result


async def run_or_skip(seconds: float) -> dict[str, Any]:
    if shutil.which("redis-server") is None:
        return {"skipped": "redis-server is not installed"}
    return await run(seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.processes))


if __name__ == "__main__":
    main()
