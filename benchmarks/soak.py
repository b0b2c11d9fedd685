"""Soak: the orchestrator and client working continuously against the simulator (its own
process, accelerated rate) for a while, printing this process's RSS and open file descriptors
at each interval. Both must stay flat.

    python -m benchmarks.soak                      # 10 minutes, a sample each minute
    python -m benchmarks.soak --minutes 1 --interval 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from postman_async import PostmanClient, RetryOrchestrator

from ._common import simulator_process, table


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def run(minutes: float = 10.0, interval: float = 60.0) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        ids_file = os.path.join(tmp, "ids.txt")
        with simulator_process(
            "--rate-limit",
            "2000",
            "--time-scale",
            "100",
            "--failed-messages",
            "5000",
            "--ids-out",
            ids_file,
        ) as (base, campaign, key):
            text = await asyncio.to_thread(Path(ids_file).read_text, encoding="utf-8")
            ids = text.split()
            async with PostmanClient(
                api_key=key, campaign_id=campaign, base_url=base, rate_limit=2000
            ) as client:
                orchestrator = RetryOrchestrator(client, concurrency=32, keep_messages=False)
                deadline = time.monotonic() + minutes * 60
                next_sample = time.monotonic()
                started = time.monotonic()
                messages = 0
                for round_ in itertools.count(1):
                    if time.monotonic() >= next_sample:
                        sample = {
                            "t_s": round(time.monotonic() - started),
                            "rss_mb": round(rss_mb(), 1),
                            "open_fds": open_fds(),
                            "messages": messages,
                            "calls": client.calls,
                        }
                        samples.append(sample)
                        print(" ".join(f"{k}={v}" for k, v in sample.items()), flush=True)
                        next_sample += interval
                    if time.monotonic() >= deadline:
                        break
                    # Retries (then skips: not in failure, exhausted) with diagnostic reads,
                    # plus listings: every code path of a long-running worker.
                    chunk = ids[(round_ * 500) % len(ids) :][:500]
                    report = await orchestrator.retry_messages(chunk)
                    messages += len(report)
                    async for _ in client.list_messages(page_size=100).pages():
                        break
    # The connection pool grows to the workers' concurrency during the first part of the run;
    # flat means no growth from mid-run to the end.
    first, last = samples[len(samples) // 2], samples[-1]
    result = {
        "minutes": minutes,
        "samples": len(samples),
        "messages": messages,
        "rss_first_mb": first["rss_mb"],
        "rss_last_mb": last["rss_mb"],
        "fds_first": first["open_fds"],
        "fds_last": last["open_fds"],
    }
    print("soak (RSS and FDs from mid-run to the end)")
    print(table(list(result.items())), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--interval", type=float, default=60.0)
    args = parser.parse_args()
    asyncio.run(run(args.minutes, args.interval))


if __name__ == "__main__":
    main()
