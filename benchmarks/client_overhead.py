"""Client overhead: the SDK's client CPU per request divided by raw aiohttp's, side by side in
one run against the same local server (the simulator in its own process, rate limit off).
Raw aiohttp does the minimum: GET with the auth header and json.loads. The SDK adds input
validation, the limiter, logging, retries bookkeeping and decoding into a typed Message.
Target: <= 1.5x.

    python -m benchmarks.client_overhead [--requests 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import aiohttp

from postman_async import PostmanClient

from ._common import simulator_process, table


async def _measure(label: str, call: Any, requests: int, workers: int) -> float:
    remaining = iter(range(requests))

    async def worker() -> None:
        for _ in remaining:
            await call()

    await asyncio.gather(*(worker() for _ in range(workers)))  # warm-up pass sizes pools
    remaining = iter(range(requests))
    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return (time.process_time() - cpu) / requests * 1e6


async def run(requests: int = 5000, workers: int = 20) -> dict[str, Any]:
    with simulator_process("--rate-limit", "1000000", "--failed-messages", "1") as (
        base,
        campaign,
        key,
    ):
        url = f"{base}/campaigns/{campaign}/messages"
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(headers=headers) as session:
            async with session.get(url, params={"limit": "1"}) as resp:
                message_id = (await resp.json())["data"][0]["id"]

            async def raw() -> None:
                async with session.get(f"{url}/{message_id}") as resp:
                    await resp.json()

            raw_us = await _measure("raw", raw, requests, workers)
        async with PostmanClient(
            api_key=key, campaign_id=campaign, base_url=base, rate_limit=1_000_000
        ) as client:

            async def sdk() -> None:
                await client.get_message(message_id)

            sdk_us = await _measure("sdk", sdk, requests, workers)
    result = {
        "requests_each": requests,
        "raw_aiohttp_cpu_us": round(raw_us, 1),
        "sdk_cpu_us": round(sdk_us, 1),
        "ratio": round(sdk_us / raw_us, 2),
    }
    print(f"client overhead, GET a message, {workers} concurrent, same server")
    print(table(list(result.items())), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    args = parser.parse_args()
    asyncio.run(run(args.requests))


if __name__ == "__main__":
    main()
