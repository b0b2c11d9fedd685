"""Real networks: the limiter against a strict server whose arrivals jitter.

The simulator runs in its own process with a network model: a 2 ms one-way delay plus jitter
of J ms on both legs (uniform 0..J; lognormal with median J/2; or uniform plus a 1% chance per
leg of 200 ms more, a TCP retransmission), and its sliding-window limiter sees a request only
after its way in. Each run is a client process of its own: 100 callers (the default HIGH
lane) make ``--calls`` calls between them at 10/s. Side by side: the answer clock (default),
the self-tuning margin, the fixed 10 ms margin and ``aiolimiter.AsyncLimiter(10, 1)``.

``--parts starve`` adds a CPU-bound process per core and SIGSTOPs the client process for
300 ms every 0.3-1.5 s (uniform 20 ms jitter). The Redis figures are ``benchmarks.distributed``.

    python -m benchmarks.network [--calls 1000] [--parallel 6] [--parts local starve]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aiolimiter import AsyncLimiter

from postman_async import PostmanClient, Priority, RateLimiter
from postman_async.errors import PostmanError

from ._common import burn, sim_stats, simulator_process, stopper

HERE = Path(__file__).resolve().parent
#: name -> simulator network arguments (2 ms one-way base delay on both legs)
CASES: dict[str, tuple[str, ...]] = {
    "0 ms": ("--jitter-ms", "0"),
    "uniform 20 ms": ("--jitter-ms", "20"),
    "uniform 40 ms": ("--jitter-ms", "40"),
    "uniform 80 ms": ("--jitter-ms", "80"),
    "lognormal, median 10 ms": ("--jitter-ms", "20", "--jitter-dist", "lognormal"),
    "uniform 10 ms + 1% 200 ms": ("--jitter-ms", "10", "--retransmit-share", "0.01"),
}
#: the answer clock's targets (calls/s), each with no 429 and at most 10 in a sliding second
TARGETS = dict(zip(CASES, (9.9, 9.6, 9.4, 9.0, 9.3, 9.5), strict=True))


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
    "answer clock": lambda: RateLimiter(10.0),
    "self-tuning margin": lambda: RateLimiter(10.0, pacing="margin"),
    "fixed 10 ms margin": lambda: RateLimiter(10.0, margin=0.01),
    "AsyncLimiter(10, 1)": lambda: AiolimiterAdapter(10.0),
}


async def _drive(base: str, campaign: str, key: str, limiter: Any, calls: int) -> None:
    left = iter(range(calls))
    async with PostmanClient(
        api_key=key, campaign_id=campaign, base_url=base, limiter=limiter
    ) as client:

        async def caller() -> None:
            for _ in left:
                with contextlib.suppress(PostmanError):
                    await client.list_messages(page_size=1).fetch()

        await asyncio.gather(*(caller() for _ in range(100)))


def _one(limiter_name: str, case: str, calls: int, queue: Any) -> None:
    """A run in its own process: the client drives its own simulator process."""

    async def main() -> dict[str, Any]:
        with simulator_process("--rate-limit", "10", "--latency-ms", "2", *CASES[case]) as sim:
            await _drive(*sim, LIMITERS[limiter_name](), calls)
            return await sim_stats(sim[0], sim[1], times=True)

    queue.put(asyncio.run(main()))


def _summary(limiter: str, case: str, stats: dict[str, Any]) -> dict[str, Any]:
    times = stats["times"]
    admitted = stats["requests"] - stats["throttled"]
    return {
        "limiter": limiter,
        "case": case,
        "requests": stats["requests"],
        "achieved_rate": round((admitted - 1) / (times[-1] - times[0]), 3),
        "throttled": stats["throttled"],
        "max_in_sliding_second": stats["maxPerSecond"],
    }


@contextlib.contextmanager
def _stopping(pid: int, seed: int) -> Iterator[None]:
    """``pid`` SIGSTOPped for 300 ms at random moments while in the block."""
    process = multiprocessing.Process(target=stopper, args=(pid, seed), daemon=True)
    process.start()
    try:
        yield
    finally:
        process.kill()
        process.join()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def _run_batch(jobs: list[tuple[str, str]], calls: int, parallel: int, starve: bool) -> list[Any]:
    """Run (limiter, case) jobs, ``parallel`` processes at a time; returns their summaries."""
    results: list[Any] = []
    ctx = multiprocessing.get_context("spawn")
    for start in range(0, len(jobs), parallel):
        group = jobs[start : start + parallel]
        queues = [ctx.Queue() for _ in group]
        procs = [
            ctx.Process(target=_one, args=(name, case, calls, queue))
            for (name, case), queue in zip(group, queues, strict=True)
        ]
        burners = []
        for proc in procs:
            proc.start()
        if starve:
            deadline = time.monotonic() + 4 * calls / 10 + 60
            burners = [
                ctx.Process(target=burn, args=(deadline,)) for _ in range(os.cpu_count() or 2)
            ]
            for burner in burners:
                burner.start()
        with contextlib.ExitStack() as stack:
            if starve:
                for index, proc in enumerate(procs):
                    assert proc.pid is not None
                    stack.enter_context(_stopping(proc.pid, index))
            for (name, case), queue, proc in zip(group, queues, procs, strict=True):
                stats = queue.get(timeout=4 * calls / 10 + 120)
                proc.join()
                row = _summary(name, case, stats)
                print(_row(row), flush=True)
                results.append(row)
        for burner in burners:
            burner.kill()
            burner.join()
    return results


def _row(r: dict[str, Any]) -> str:
    return (
        f"  {r['limiter']:<20} {r['case']:<26} {r['achieved_rate']:>7.3f}/s "
        f"{r['throttled']:>4} 429s  max {r['max_in_sliding_second']:>2}  ({r['requests']} requests)"
    )


def _plot(rows: list[dict[str, Any]]) -> None:
    """``network.png``: achieved rate per case and limiter (needs the ``bench`` extra)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # figures only
        return
    cases = list(dict.fromkeys(r["case"] for r in rows))
    names = list(dict.fromkeys(r["limiter"] for r in rows))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(names)
    for index, name in enumerate(names):
        by_case = {r["case"]: r for r in rows if r["limiter"] == name}
        xs = [c + index * width for c, case in enumerate(cases) if case in by_case]
        ys = [by_case[case]["achieved_rate"] for case in cases if case in by_case]
        bars = ax.bar(xs, ys, width, label=name)
        for bar, case in zip(bars, [c for c in cases if c in by_case], strict=True):
            if by_case[case]["throttled"]:
                bar.set_hatch("//")
    ax.set_xticks([c + 0.4 - width / 2 for c in range(len(cases))])
    ax.set_xticklabels([c.replace(", ", "\n").replace(" + ", "\n+ ") for c in cases], fontsize=8)
    ax.set_ylim(6, 10.1)
    ax.set_ylabel("achieved calls/s (budget 10)")
    ax.set_title("Against a strict server, jitter on both legs (hatched: met 429s)")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(HERE / "network.png", dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--parallel", type=int, default=6)
    parser.add_argument("--parts", nargs="+", choices=("local", "starve"), default=["local"])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--limiters", nargs="+", choices=list(LIMITERS), default=list(LIMITERS))
    args = parser.parse_args()
    out: dict[str, Any] = {"calls": args.calls}
    if "local" in args.parts:
        print(f"{args.calls} calls per run, {args.parallel} runs at a time", flush=True)
        jobs = [(name, case) for case in args.cases for name in args.limiters]
        out["local"] = _run_batch(jobs, args.calls, args.parallel, starve=False)
    if "starve" in args.parts:
        print("CPU starvation: a burner per core, the client SIGSTOPped 300 ms at random")
        jobs = [(name, "uniform 20 ms") for name in ("answer clock", "self-tuning margin")]
        out["starve"] = _run_batch(jobs, args.calls, 1, starve=True)
    (HERE / "network.json").write_text(json.dumps(out, indent=1))
    if "local" in out:
        _plot(out["local"])
    missed = [
        r
        for r in out.get("local", [])
        if r["limiter"] == "answer clock"
        and (
            r["achieved_rate"] < TARGETS[r["case"]]
            or r["throttled"]
            or r["max_in_sliding_second"] > 10
        )
    ]
    print("targets met" if not missed else f"targets missed: {missed}", file=sys.stderr)


if __name__ == "__main__":
    main()
