"""Many processes, one budget: worker processes share one campaign through Redis
(``RedisRateLimiter``, pacing by answers) against the simulator's strict limiter at the real
10/s.

Each run: a redis-server, the simulator in its own process (2 ms one-way delay on both legs
plus one of ``benchmarks.network``'s jitter cases), and 4 worker processes of 100 callers
each, all in one lane (HIGH or BULK), calling as fast as the shared limiter allows for
``--seconds`` (the workers start together, behind a barrier). Figures: the rate the server
admitted, its 429s and the most it saw in any sliding second; the Redis acquire round trip
(median, p99) as the workers' drivers measured it; acquire and report calls per grant.

Targets: per case and lane, achieved >= 97% of the in-process target
(``benchmarks.network.TARGETS``), no 429, at most 10 in any sliding second; Redis acquire
median < 250 µs and p99 < 5 ms.

Each worker also PINGs Redis every 100 ms: the round trip of a process that was idle, which
on a small VM (0.4-0.6 ms) is most of what an acquire at 10/s costs.

``--parts starve``: a CPU-bound process per core, and every worker SIGSTOPped for 300 ms at
random moments (every 0.3-1.5 s each), uniform 20 ms jitter: still no sliding second above
the rate, and no 429. ``--parts latency``: the acquire round trip under load, without a
server: 4 processes of 100 callers (both lanes) at 1,000/s, each answer taken at once.

    python -m benchmarks.distributed [--seconds 30] [--cases "0 ms" "uniform 40 ms"]
        [--lanes high bulk] [--parts network starve latency] [--pacing answers|margin]
        [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from postman_async import PostmanClient, Priority
from postman_async.errors import PostmanError
from postman_async.testing import SimulatorProcess
from postman_async.testing.process import free_port

from ._common import burn, sim_stats, stopper, table
from .network import CASES, TARGETS

#: achieved rate through Redis, as a share of the in-process target
SHARE_OF_IN_PROCESS = 0.97
LATENCY_TARGETS_US = (250, 5000)  # median, p99
STARVE_CASE = "uniform 20 ms"


def worker(
    redis_url: str,
    base_url: str,
    campaign: str,
    key: str,
    rate: float,
    seconds: float,
    bulk: bool = False,
    callers: int = 100,
    pacing: str = "answers",
    barrier: Any = None,
) -> dict[str, Any]:
    """One process's client of the shared campaign: ``callers`` concurrent callers in one
    lane, as fast as the shared limiter allows, for ``seconds`` (after ``barrier``, when
    given). Returns its counts and the Redis acquire round trips (s). Also used by
    tests/distributed."""
    if barrier is not None:
        barrier.wait()
    return asyncio.run(
        _work(redis_url, base_url, campaign, key, rate, seconds, bulk, callers, pacing)
    )


async def _work(
    redis_url: str,
    base_url: str,
    campaign: str,
    key: str,
    rate: float,
    seconds: float,
    bulk: bool,
    callers: int,
    pacing: str,
) -> dict[str, Any]:
    from postman_async.ratelimit_redis import RedisRateLimiter

    limiter = RedisRateLimiter(
        redis_url, campaign_id=campaign, rate=rate, pacing="margin" if pacing == "margin" else None
    )
    priority = Priority.BULK if bulk else Priority.HIGH
    calls = errors = 0
    pings: list[float] = []
    # Stopped by a flag as well as cancelled: redis-py can swallow a cancellation that comes
    # during a command (seen with redis 8.2), and a loop would then go on for ever.
    running = [True]
    try:
        async with PostmanClient(
            api_key=key, campaign_id=campaign, base_url=base_url, limiter=limiter
        ) as client:

            async def caller() -> None:
                nonlocal calls, errors
                while running[0]:
                    try:
                        await client.list_messages(page_size=1, priority=priority).fetch()
                        calls += 1
                    except PostmanError:
                        errors += 1

            tasks = [asyncio.ensure_future(caller()) for _ in range(callers)]
            tasks.append(asyncio.ensure_future(_ping_probe(limiter, pings, running)))
            await asyncio.sleep(seconds)
            running[0] = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await limiter.aclose()
    answers = limiter.answers
    return {
        "calls": calls,
        "errors": errors,
        "grants": limiter.grants,
        "latencies": list(limiter.redis_latencies),
        "pings": pings,
        "reserve_calls": answers.reserve_calls if answers else len(limiter.redis_latencies),
        "report_calls": answers.report_calls if answers else 0,
        "slot_reasons": dict(answers.slot_reasons) if answers else {},
        "late_requeues": limiter.late_requeues,
    }


async def _ping_probe(
    limiter: Any, pings: list[float], running: list[bool], every: float = 0.1
) -> None:
    """A PING now and then, as a baseline: a round trip from a process that was idle."""
    while running[0]:
        await asyncio.sleep(every)
        started = time.perf_counter()
        await limiter._redis.ping()
        pings.append(time.perf_counter() - started)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port (persistence off), stopped by PID."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("needs redis-server (apt-get install redis-server)")
    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly"]
    proc = subprocess.Popen([*args, "no"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _worker_main(queue: Any, *args: Any) -> None:
    try:
        queue.put(worker(*args))
    except BaseException:
        queue.put({"failed": traceback.format_exc()})
        raise


def _latency_main(queue: Any, redis_url: str, rate: float, seconds: float, barrier: Any) -> None:
    try:
        barrier.wait()
        queue.put(asyncio.run(_load(redis_url, rate, seconds)))
    except BaseException:
        queue.put({"failed": traceback.format_exc()})
        raise


async def _collect(queues: list[Any], timeout: float) -> list[dict[str, Any]]:
    outcomes = [await asyncio.to_thread(q.get, True, timeout) for q in queues]
    for outcome in outcomes:
        if "failed" in outcome:
            raise RuntimeError(f"a worker process failed:\n{outcome['failed']}")
    return outcomes


async def _load(redis_url: str, rate: float, seconds: float) -> dict[str, Any]:
    """100 callers whose requests are answered at once (no server): the limiter's own cost."""
    from postman_async.ratelimit_redis import RedisRateLimiter

    limiter = RedisRateLimiter(redis_url, campaign_id="load", rate=rate)
    pings: list[float] = []
    running = [True]

    async def caller(lane: Priority) -> None:
        while running[0]:
            grant = await limiter.acquire(lane)
            assert grant is not None
            grant.written()
            await asyncio.sleep(0)
            grant.answered()

    lanes = [Priority.HIGH, Priority.BULK] * 50
    tasks = [asyncio.ensure_future(caller(lane)) for lane in lanes]
    tasks.append(asyncio.ensure_future(_ping_probe(limiter, pings, running, every=0.01)))
    try:
        await asyncio.sleep(seconds)
    finally:
        running[0] = False
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await limiter.aclose()
    answers = limiter.answers
    assert answers is not None
    return {
        "grants": limiter.grants,
        "latencies": list(limiter.redis_latencies),
        "pings": pings,
        "reserve_calls": answers.reserve_calls,
        "report_calls": answers.report_calls,
    }


async def run_latency(
    seconds: float, processes: int = 4, rate: float = 1000.0, verbose: bool = True
) -> dict[str, Any]:
    """The acquire round trip under load: ``processes`` processes of 100 callers (both
    lanes) at ``rate`` a second, answered at once, no server."""
    ctx = multiprocessing.get_context("spawn")
    with redis_server() as redis_url:
        barrier = ctx.Barrier(processes + 1)
        queues = [ctx.Queue() for _ in range(processes)]
        procs = [
            ctx.Process(target=_latency_main, args=(q, redis_url, rate, seconds, barrier))
            for q in queues
        ]
        for proc in procs:
            proc.start()
        await asyncio.to_thread(barrier.wait, 120)
        outcomes = await _collect(queues, seconds + 120)
        for proc in procs:
            proc.join(timeout=30)
    grants = max(1, sum(o["grants"] for o in outcomes))
    result = {
        "case": f"load, {rate:g}/s, answered at once",
        "grants_per_second": round(grants / seconds),
        "redis_acquires": sum(len(o["latencies"]) for o in outcomes),
        "acquire_calls_per_grant": round(sum(o["reserve_calls"] for o in outcomes) / grants, 2),
        "report_calls_per_grant": round(sum(o["report_calls"] for o in outcomes) / grants, 2),
        **_quantiles("redis_us", [x for o in outcomes for x in o["latencies"]]),
        **_quantiles("ping_us", [x for o in outcomes for x in o["pings"]]),
    }
    result["ok"] = (
        result["redis_us_median"] is not None
        and result["redis_us_median"] < LATENCY_TARGETS_US[0]
        and result["redis_us_p99"] < LATENCY_TARGETS_US[1]
    )
    if verbose:
        print(
            f"  {result['case']:<33} {result['grants_per_second']}/s granted  acquire "
            f"{result['redis_us_median']} / {result['redis_us_p99']} µs (median / p99, "
            f"{result['redis_acquires']}; PING {result['ping_us_median']} / "
            f"{result['ping_us_p99']})  calls/grant {result['acquire_calls_per_grant']} + "
            f"{result['report_calls_per_grant']}  {'ok' if result['ok'] else 'MISSED'}",
            flush=True,
        )
    return result


async def run(
    seconds: float = 30.0,
    processes: int = 4,
    rate: float = 10.0,
    *,
    case: str = "0 ms",
    lane: str = "high",
    callers: int = 100,
    starve: bool = False,
    pacing: str = "answers",
    verbose: bool = True,
) -> dict[str, Any]:
    """One run (see the module doc); returns its figures."""
    ctx = multiprocessing.get_context("spawn")
    sim_args = ("--rate-limit", f"{rate:g}", "--latency-ms", "2", *CASES[case])
    with redis_server() as redis_url, SimulatorProcess(*sim_args) as sim:
        barrier = ctx.Barrier(processes + 1)
        queues = [ctx.Queue() for _ in range(processes)]
        procs = [
            ctx.Process(
                target=_worker_main,
                args=(
                    queue,
                    redis_url,
                    sim.base_url,
                    sim.campaign_id,
                    sim.api_key,
                    rate,
                    seconds,
                    lane == "bulk",
                    callers,
                    pacing,
                    barrier,
                ),
            )
            for queue in queues
        ]
        helpers: list[Any] = []
        try:
            for proc in procs:
                proc.start()
            await asyncio.to_thread(barrier.wait, 120)
            if starve:
                deadline = time.monotonic() + seconds + 30
                helpers += [
                    ctx.Process(target=burn, args=(deadline,)) for _ in range(os.cpu_count() or 2)
                ]
                helpers += [
                    ctx.Process(target=stopper, args=(proc.pid, index))
                    for index, proc in enumerate(procs)
                ]
                for helper in helpers:
                    helper.start()
            outcomes = await _collect(queues, seconds + 120)
        finally:
            for helper in helpers:
                helper.kill()
                helper.join()
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid or 0, signal.SIGCONT)
                proc.join(timeout=30)
        stats = await sim_stats(sim.base_url, sim.campaign_id, times=True)
    return _figures(stats, outcomes, seconds, case, lane, starve, pacing, verbose)


def _figures(
    stats: dict[str, Any],
    outcomes: list[dict[str, Any]],
    seconds: float,
    case: str,
    lane: str,
    starve: bool,
    pacing: str,
    verbose: bool,
) -> dict[str, Any]:
    times = stats["times"]
    admitted = stats["requests"] - stats["throttled"]
    achieved = (admitted - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    latencies = sorted(x for o in outcomes for x in o["latencies"])
    grants = max(1, sum(o["grants"] for o in outcomes))
    reasons: dict[str, int] = {}
    for o in outcomes:
        for why, count in o["slot_reasons"].items():
            reasons[why] = reasons.get(why, 0) + count
    target = round(SHARE_OF_IN_PROCESS * TARGETS[case], 3)
    result: dict[str, Any] = {
        "case": case + (", CPU starved" if starve else ""),
        "lane": lane,
        "pacing": pacing,
        "seconds": seconds,
        "processes": len(outcomes),
        "requests": stats["requests"],
        "per_process": [o["calls"] for o in outcomes],
        "achieved_rate": round(achieved, 3),
        "target_rate": target,
        "throttled_429": stats["throttled"],
        "per_1000_429": round(1000 * stats["throttled"] / max(1, stats["requests"]), 2),
        "max_in_sliding_second": stats["maxPerSecond"],
        "acquire_calls_per_grant": round(sum(o["reserve_calls"] for o in outcomes) / grants, 2),
        "report_calls_per_grant": round(sum(o["report_calls"] for o in outcomes) / grants, 2),
        "slots_set_by": reasons,
        "late_requeues": sum(o["late_requeues"] for o in outcomes),
        "redis_acquires": len(latencies),
        "redis_us_median": round(statistics.median(latencies) * 1e6) if latencies else None,
        "redis_us_p99": round(latencies[int(len(latencies) * 0.99)] * 1e6) if latencies else None,
        **_quantiles("ping_us", [x for o in outcomes for x in o.get("pings", [])]),
    }
    # The starved runs are held to the budget only (a stopped process cannot keep the rate).
    result["ok"] = (
        result["throttled_429"] == 0
        and result["max_in_sliding_second"] <= 10
        and (starve or achieved >= target)
    )
    if verbose:
        print(_row(result), flush=True)
    return result


def _quantiles(name: str, samples: list[float]) -> dict[str, Any]:
    samples = sorted(samples)
    if not samples:
        return {f"{name}_median": None, f"{name}_p99": None}
    return {
        f"{name}_median": round(statistics.median(samples) * 1e6),
        f"{name}_p99": round(samples[int(len(samples) * 0.99)] * 1e6),
    }


def _row(r: dict[str, Any]) -> str:
    return (
        f"  {r['case']:<28} {r['lane']:<4} {r['achieved_rate']:>7.3f}/s (>= {r['target_rate']})"
        f" {r['throttled_429']:>3} 429s  max {r['max_in_sliding_second']:>2}  "
        f"acquire {r['redis_us_median']} / {r['redis_us_p99']} µs (median / p99, "
        f"{r['redis_acquires']}; PING {r['ping_us_median']} / {r['ping_us_p99']})  "
        f"calls/grant {r['acquire_calls_per_grant']} + "
        f"{r['report_calls_per_grant']}  {'ok' if r['ok'] else 'MISSED'}"
    )


async def run_or_skip(seconds: float) -> dict[str, Any]:
    """The figure ``python -m benchmarks`` shows: 0 ms of jitter, HIGH lane."""
    if shutil.which("redis-server") is None:
        return {"skipped": "redis-server is not installed"}
    return await run(seconds)


async def _main(args: argparse.Namespace) -> list[dict[str, Any]]:
    print(
        f"{args.processes} processes x {args.callers} callers through Redis, 10/s, "
        f"{args.seconds:g} s per run, pacing {args.pacing}",
        flush=True,
    )
    rows = []
    if "network" in args.parts:
        for case in args.cases:
            for lane in args.lanes:
                rows.append(
                    await run(
                        args.seconds,
                        args.processes,
                        case=case,
                        lane=lane,
                        callers=args.callers,
                        pacing=args.pacing,
                    )
                )
    if "starve" in args.parts:
        for lane in args.lanes:
            rows.append(
                await run(
                    args.seconds,
                    args.processes,
                    case=STARVE_CASE,
                    lane=lane,
                    callers=args.callers,
                    starve=True,
                    pacing=args.pacing,
                )
            )
    if "latency" in args.parts:
        rows.append(await run_latency(args.seconds, args.processes))
    latencies = [r for r in rows if r["redis_us_median"] is not None and ", CPU" not in r["case"]]
    if latencies:
        median = statistics.median(r["redis_us_median"] for r in latencies)
        worst = max(r["redis_us_p99"] for r in latencies)
        ok = median < LATENCY_TARGETS_US[0] and worst < LATENCY_TARGETS_US[1]
        print(
            table(
                [
                    ("Redis acquire median (median of runs)", f"{median:g} µs"),
                    ("Redis acquire p99 (worst run)", f"{worst} µs"),
                    ("latency targets", "met" if ok else "MISSED"),
                ]
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--lanes", nargs="+", choices=("high", "bulk"), default=["high", "bulk"])
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=("network", "starve", "latency"),
        default=["network", "starve", "latency"],
    )
    parser.add_argument("--pacing", choices=("answers", "margin"), default="answers")
    parser.add_argument("--out", type=Path, help="write the figures there (JSON)")
    args = parser.parse_args()
    rows = asyncio.run(_main(args))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    missed = [r for r in rows if not r["ok"]]
    print("targets met" if not missed else f"targets missed: {len(missed)}", file=sys.stderr)


if __name__ == "__main__":
    main()
