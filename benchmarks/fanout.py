"""Fan-out: the orchestrator retrying many failed messages.

(a) 1,000 failed messages at the real 10/s against the simulator's strict limiter: elapsed vs
    the 100 s floor, calls per message (target <= 1.01), max per sliding second (<= 10), 429s.
(c) meanwhile, an urgent send every ~0.6 s in the default (high) lane: its wait for a token
    (target p99 <= 150 ms).
(b) 100,000 IDs at an accelerated rate, simulator in its own process: peak RSS growth of this
    process (target < 50 MB) and client CPU per message.

    python -m benchmarks.fanout            # all parts
    python -m benchmarks.fanout --quick    # (a)/(c) with 200 messages, (b) with 20,000
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from postman_async import Outcome, PostmanClient, RetryOrchestrator

from ._common import sim_stats, simulator_process, table


async def real_rate(messages: int = 1000) -> dict[str, Any]:
    """(a): the bulk run alone at the real 10/s (the simulator in its own process)."""
    with tempfile.TemporaryDirectory() as tmp:
        ids_file = os.path.join(tmp, "ids.txt")
        with simulator_process(
            "--rate-limit", "10", "--failed-messages", str(messages), "--ids-out", ids_file
        ) as (base, campaign, key):
            async with PostmanClient(api_key=key, campaign_id=campaign, base_url=base) as client:
                report = await RetryOrchestrator(client).retry_messages(_ids(ids_file))
            stats = await sim_stats(base, campaign)
    return {
        "messages": messages,
        "retried": report.counts[Outcome.RETRIED],
        "elapsed_s": round(report.elapsed, 2),
        "floor_s": round((messages - 1) / 10.0, 1),
        "calls_per_message": round(report.calls / messages, 4),
        "max_in_sliding_second": stats["maxPerSecond"],
        "throttled_429": stats["throttled"],
    }


async def urgent_latency(messages: int = 400, every: float = 1.0) -> dict[str, Any]:
    """(c): an urgent call (default HIGH lane) about once a second while a bulk run saturates
    the budget; its latency end to end (token wait + loopback request)."""
    with tempfile.TemporaryDirectory() as tmp:
        ids_file = os.path.join(tmp, "ids.txt")
        with simulator_process(
            "--rate-limit", "10", "--failed-messages", str(messages), "--ids-out", ids_file
        ) as (base, campaign, key):
            async with PostmanClient(api_key=key, campaign_id=campaign, base_url=base) as client:
                run = asyncio.ensure_future(
                    RetryOrchestrator(client).retry_messages(_ids(ids_file))
                )
                latencies: list[float] = []
                rng = random.Random(0)
                await asyncio.sleep(2.0)  # let the bulk run saturate the budget first
                while not run.done():
                    started = time.monotonic()
                    await client.send_message("6591234567", "english", {"body": "OTP 123456"})
                    latencies.append(time.monotonic() - started)
                    # Random spacing: a fixed 1 s would phase-lock with the 101 ms slots.
                    await asyncio.sleep(rng.uniform(0.5, 1.5) * every)
                report = await run
            stats = await sim_stats(base, campaign)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return {
        "bulk_messages": messages,
        "bulk_retried": report.counts[Outcome.RETRIED],
        "urgent_sends": len(latencies),
        "urgent_median_ms": round(statistics.median(latencies) * 1000, 1),
        "urgent_p99_ms": round(p99 * 1000, 1),
        "urgent_max_ms": round(latencies[-1] * 1000, 1),
        "max_in_sliding_second": stats["maxPerSecond"],
        "throttled_429": stats["throttled"],
    }


def _ids(path: str) -> Iterator[str]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield line.strip()


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def many_ids(count: int = 100_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        ids_file = os.path.join(tmp, "ids.txt")
        with simulator_process(
            "--rate-limit", "1000000", "--failed-messages", str(count), "--ids-out", ids_file
        ) as (base, campaign, key):
            async with PostmanClient(
                api_key=key, campaign_id=campaign, base_url=base, rate_limit=1_000_000
            ) as client:
                await client.get_message(next(_ids(ids_file)))  # warm the connection pool
                gc.collect()
                rss_before = _rss_mb()
                cpu_before = time.process_time()
                orchestrator = RetryOrchestrator(client, concurrency=32, keep_messages=False)
                report = await orchestrator.retry_messages(_ids(ids_file))
                cpu = time.process_time() - cpu_before
                rss_after = _rss_mb()
    return {
        "ids": count,
        "retried": report.counts[Outcome.RETRIED],
        "elapsed_s": round(report.elapsed, 1),
        "messages_per_s": round(count / report.elapsed),
        "peak_rss_growth_mb": round(rss_after - rss_before, 1),
        "client_cpu_per_message_us": round(cpu / count * 1e6),
    }


async def run(quick: bool = False) -> dict[str, Any]:
    a = await real_rate(200 if quick else 1000)
    print("fan-out (a): failed messages retried at the real 10/s", flush=True)
    print(table(list(a.items())), flush=True)
    b = await many_ids(20_000 if quick else 100_000)
    print("fan-out (b): IDs streamed from a file, accelerated rate, keep_messages=False")
    print(table(list(b.items())), flush=True)
    c = await urgent_latency(100 if quick else 400)
    print("fan-out (c): urgent sends while a bulk run saturates the 10/s budget")
    print(table(list(c.items())), flush=True)
    return {"real_rate": a, "many_ids": b, "urgent": c}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("a", "b", "c"))
    args = parser.parse_args()
    parts = {"a": real_rate, "b": many_ids, "c": urgent_latency}
    if args.only:
        sizes = {"a": (200, 1000), "b": (20_000, 100_000), "c": (100, 400)}[args.only]
        result = asyncio.run(parts[args.only](sizes[0] if args.quick else sizes[1]))
        print(table(list(result.items())))
    else:
        asyncio.run(run(args.quick))


if __name__ == "__main__":
    main()
