"""Real networks: the limiter against a strict server whose arrivals jitter.

The simulator runs in its own process with a network model (a 2 ms base one-way delay plus
uniform jitter of J ms, or lognormal, each way; the server's sliding-window limiter sees a
request only after its way in). 30 callers drive one campaign at 10/s for ``--seconds``, side by
side for three limiters: the self-tuning default, the previous fixed 10 ms margin, and
``aiolimiter.AsyncLimiter(10, 1)``. Then 4 processes share the campaign through Redis at 40 ms.

Targets for the default: at every jitter up to 40 ms, >= 9.5/s and <= 1 429 per 1,000 calls;
at 0 ms, >= 9.85/s and no 429; at 80 ms, >= 9.0/s.

    python -m benchmarks.network [--seconds 30] [--only self-tuning]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiolimiter import AsyncLimiter

from postman_async import PostmanClient, Priority, RateLimiter
from postman_async.errors import PostmanError
from postman_async.testing.network import Network

from . import distributed
from ._common import sim_stats, simulator_process, table

HERE = Path(__file__).resolve().parent
CASES = [("uniform", j) for j in (0, 5, 10, 20, 40, 80)] + [("lognormal", 20)]


class AiolimiterAdapter:
    """``AsyncLimiter(rate, 1)`` as a campaign limiter; a 429 pauses only its caller."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._limiter = AsyncLimiter(rate, 1.0)

    async def acquire(self, priority: Priority = Priority.HIGH) -> None:
        await self._limiter.acquire()

    async def penalize(self, delay: float, *, retry_after: float | None = None) -> None:
        await asyncio.sleep(delay)


LIMITERS: dict[str, Callable[[], Any]] = {
    "self-tuning": lambda: RateLimiter(10.0),
    "fixed 10 ms": lambda: RateLimiter(10.0, margin=0.01),
    "aiolimiter(10, 1)": lambda: AiolimiterAdapter(10.0),
}


async def one(name: str, dist: str, jitter_ms: float, seconds: float) -> dict[str, Any]:
    args = ("--rate-limit", "10", "--latency-ms", "2", "--jitter-ms", str(jitter_ms))
    with simulator_process(*args, "--jitter-dist", dist) as (base, campaign, key):
        limiter = LIMITERS[name]()
        loop = asyncio.get_running_loop()
        async with PostmanClient(
            api_key=key, campaign_id=campaign, base_url=base, limiter=limiter
        ) as client:
            deadline = loop.time() + seconds

            async def caller() -> None:
                while loop.time() < deadline:
                    with contextlib.suppress(PostmanError):
                        await client.list_messages(page_size=1).fetch()

            await asyncio.gather(*(caller() for _ in range(30)))
        stats = await sim_stats(base, campaign, times=True)
    times = stats["times"]
    admitted = stats["requests"] - stats["throttled"]
    margin = getattr(limiter, "margin", None)
    return {
        "limiter": name,
        "jitter": f"{jitter_ms:g} ms {dist}",
        "requests": stats["requests"],
        "achieved_rate": round((admitted - 1) / (times[-1] - times[0]), 3),
        "per_1000_429": round(1000 * stats["throttled"] / stats["requests"], 2),
        "max_in_sliding_second": stats["maxPerSecond"],
        "margin_at_end_ms_per_s": round(margin * 1000, 1) if margin is not None else None,
    }


def _row(r: dict[str, Any]) -> str:
    return (
        f"  {r['limiter']:<18} {r['jitter']:<16} {r['achieved_rate']:>7.3f}/s "
        f"{r['per_1000_429']:>6} 429s/1000  max {r['max_in_sliding_second']:>2}  "
        f"margin {r['margin_at_end_ms_per_s']}"
    )


async def run(seconds: float = 30.0, only: str | None = None) -> dict[str, Any]:
    rows = []
    for dist, jitter in CASES:
        for name in LIMITERS:
            if only and name != only:
                continue
            row = await one(name, dist, jitter, seconds)
            print(_row(row), flush=True)
            rows.append(row)
    shared = await distributed.run(
        seconds, network=Network(latency=0.002, jitter=0.04), verbose=False
    )
    print("4 processes through Redis, 40 ms uniform jitter")
    print(table(list(shared.items())), flush=True)
    result = {"seconds": seconds, "rows": rows, "redis_4_processes_40ms": shared}
    (HERE / "network.json").write_text(json.dumps(result, indent=1))
    _plot(rows)
    return result


def _plot(rows: list[dict[str, Any]]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the bench extra is not installed: figures only
        return
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name in LIMITERS:
        points = [
            (float(r["jitter"].split()[0]), r["achieved_rate"])
            for r in rows
            if r["limiter"] == name and r["jitter"].endswith("uniform")
        ]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=name)
    ax.axhline(9.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("one-way jitter J (ms, uniform 0..J each way)")
    ax.set_ylabel("achieved calls/s (budget 10)")
    ax.set_title("Achieved rate against a strict server whose arrivals jitter")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "network.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--only", choices=list(LIMITERS))
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.only))


if __name__ == "__main__":
    main()
