"""Simulator throughput: how many requests/s the simulator serves on loopback, so it is never
the bottleneck of our own benchmarks. The simulator runs in its own process (rate limit off);
the load comes from raw aiohttp in this one. Target: >= 2,000 requests/s.

    python -m benchmarks.sim_throughput --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import aiohttp

from ._common import simulator_process, table


async def _load(base: str, campaign: str, key: str, seconds: float, workers: int) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    url = f"{base}/campaigns/{campaign}/messages"
    counts = {"sends": 0, "gets": 0, "errors": 0}
    connector = aiohttp.TCPConnector(limit=workers)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async with session.post(
            url, json={"recipient": "6591234567", "language": "english", "values": {"body": "hi"}}
        ) as resp:
            message_id = (await resp.json())["id"]
        deadline = time.monotonic() + seconds

        async def worker(index: int) -> None:
            while time.monotonic() < deadline:
                if index % 4 == 0:
                    async with session.post(
                        url,
                        json={
                            "recipient": "6591234567",
                            "language": "english",
                            "values": {"body": "hi"},
                        },
                    ) as resp:
                        await resp.read()
                        counts["sends" if resp.status == 201 else "errors"] += 1
                else:
                    async with session.get(f"{url}/{message_id}") as resp:
                        await resp.read()
                        counts["gets" if resp.status == 200 else "errors"] += 1

        started = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(workers)))
        elapsed = time.monotonic() - started
    total = counts["sends"] + counts["gets"]
    return {
        "requests": total,
        **counts,
        "seconds": round(elapsed, 2),
        "requests_per_second": round(total / elapsed),
    }


async def run(seconds: float = 5.0, workers: int = 64) -> dict[str, Any]:
    with simulator_process("--rate-limit", "1000000") as (base, campaign, key):
        result = await _load(base, campaign, key, seconds, workers)
    print(
        f"simulator throughput, {workers} concurrent raw aiohttp callers "
        "(1 send : 3 GETs), simulator in its own process"
    )
    print(table(list(result.items())))
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.workers))


if __name__ == "__main__":
    main()
