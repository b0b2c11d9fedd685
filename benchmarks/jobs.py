"""Distributed retry jobs (taskiq + Redis) under worker crashes, and the sink mode's memory.

(a) ``fast``: 100,000 failed messages, 4 worker processes, 2 of them SIGKILLed mid-job (and
    replaced), the simulator at a raised rate in its own process, Redis with AOF and
    ``appendfsync always``. Double POSTs (target 0), results vs distinct IDs (equal), budget
    used (calls / (rate x elapsed), target >= 95%), Redis memory per ID, worker RSS growth.
(b) ``real``: the same at the real 10/s for 5 minutes (as many IDs as fit).
(c) ``sink``: ``retry_messages`` with an NDJSON sink over 1,000,000 IDs in this process:
    RSS growth (target < 30 MB).

    python -m benchmarks.jobs                     # all parts
    python -m benchmarks.jobs --only fast|real|sink [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from postman_async import PostmanClient, RetryOrchestrator
from postman_async.jobs import JobSettings, JobStore, submit_job, taskiq_app
from postman_async.models import MessageStatus
from postman_async.reports import MessageState
from postman_async.testing.process import free_port

from ._common import sim_stats, simulator_process, table

HERE = Path(__file__).parent


@contextmanager
def redis_server() -> Iterator[str]:
    """redis-server with the journal's durability settings, in a temporary directory."""
    port, folder = free_port(), tempfile.mkdtemp(prefix="bench-jobs-")
    binary = shutil.which("redis-server") or "redis-server"
    args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", folder, "--save", ""]
    proc = subprocess.Popen(
        [binary, *args, "--appendonly", "yes", "--appendfsync", "always"],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.3)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


class WorkerPool:
    def __init__(self, redis_url: str, api_key: str) -> None:
        self.env = dict(os.environ, POSTMAN_ASYNC_REDIS_URL=redis_url, POSTMAN_API_KEY=api_key)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.start_rss: dict[int, int] = {}

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "postman_async.jobs.worker", "--concurrency", "16"],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(proc)
        return proc

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def kill_one(self, rng: random.Random) -> None:
        victim = rng.choice(self.alive())
        victim.kill()
        victim.wait()
        self.start()

    def stop(self) -> None:
        for proc in self.alive():
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=30)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def _ids(path: str) -> AsyncIterator[object]:
    for line in await asyncio.to_thread(_read_ids, path):
        yield MessageState(line, MessageStatus.FAILURE, 1)


def _read_ids(path: str) -> list[str]:
    return Path(path).read_text(encoding="utf-8").split()


async def run_job(messages: int, rate: float, kills: int, seconds: float | None) -> dict[str, Any]:
    """Parts (a) and (b)."""
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp, redis_server() as redis_url:
        ids_file = os.path.join(tmp, "ids.txt")
        sim_args = ("--rate-limit", str(rate), "--failed-messages", str(messages))
        with simulator_process(*sim_args, "--ids-out", ids_file) as (base, campaign, key):
            taskiq_app.configure(redis_url)
            redis = aioredis.Redis.from_url(redis_url)
            pool = WorkerPool(redis_url, key)
            for _ in range(4):
                pool.start()
            settings = JobSettings(
                campaign_id=campaign,
                base_url=base,
                chunks=64,
                rate=rate,
                lease_ttl=5.0,
                window=1.0,
                http_timeout=10.0,
            )
            before = int((await redis.info("memory"))["used_memory"])
            started = time.monotonic()
            await submit_job(redis, "bench", _ids(ids_file), settings)
            submitted_at = time.monotonic() - started
            after_submit = int((await redis.info("memory"))["used_memory"])
            store = JobStore(redis, "bench")
            figures = await _watch(store, pool, rng, kills, messages, seconds)
            elapsed = time.monotonic() - started
            calls_in_time = (await store.progress()).calls
            await asyncio.to_thread(pool.stop)  # SIGTERM: running slices finish first
            progress = await store.progress()
            results = sum([1 async for _ in store.results()])
            at_end = int((await redis.info("memory"))["used_memory"])
            await redis.aclose()
            await taskiq_app.broker.connection_pool.disconnect()
            stats = await sim_stats(base, campaign)
            posts = await _retry_posts(base, campaign)
    double = sum(n - 1 for n in posts.values() if n > 1)
    return {
        "messages": messages,
        "rate": rate,
        "workers": 4,
        "sigkills": kills,
        "elapsed_s": round(elapsed, 1),
        "submit_s": round(submitted_at, 1),
        "done": progress.done,
        "finished": progress.finished,
        "results": results,
        "distinct_submitted": progress.distinct,
        "double_posts": double,
        "retry_posts": sum(posts.values()),
        "calls": progress.calls,
        "budget_used": round(calls_in_time / (rate * elapsed), 3),
        "throttled_429": stats["throttled"],
        "max_in_sliding_second": stats["maxPerSecond"],
        "redis_bytes_per_id_pending": round((after_submit - before) / messages),
        "redis_bytes_per_id_done": round((at_end - before) / max(1, progress.done)),
        **figures,
    }


async def _watch(
    store: JobStore,
    pool: WorkerPool,
    rng: random.Random,
    kills: int,
    messages: int,
    seconds: float | None,
) -> dict[str, Any]:
    """Wait for the job (or ``seconds``), SIGKILLing workers at even shares of the work."""
    started = time.monotonic()
    kill_at = [messages * (k + 1) / (kills + 1) for k in range(kills)]
    if seconds is not None:
        kill_at = []  # by time instead
        kill_times = [seconds * (k + 1) / (kills + 1) for k in range(kills)]
    first_rss: dict[int, int] = {}
    while True:
        progress = await store.progress()
        now = time.monotonic() - started
        if not first_rss and progress.done >= min(2000, messages // 20):
            first_rss = {p.pid: rss_kb(p.pid) for p in pool.alive()}
        if kill_at and progress.done >= kill_at[0]:
            kill_at.pop(0)
            pool.kill_one(rng)
        if seconds is not None and kill_times and now >= kill_times[0]:
            kill_times.pop(0)
            pool.kill_one(rng)
        if progress.finished or (seconds is not None and now >= seconds):
            break
        await asyncio.sleep(0.5)
    growth = [rss_kb(pid) - kb for pid, kb in first_rss.items() if _alive(pool, pid)]
    return {"worker_rss_growth_mb": round(max(growth, default=0) / 1024, 1)}


def _alive(pool: WorkerPool, pid: int) -> bool:
    return any(p.pid == pid for p in pool.alive())


async def _retry_posts(base: str, campaign: str) -> dict[str, int]:
    import aiohttp

    url = base.replace("/api/v2", "/__simulator__/stats")
    params = {"campaign": campaign, "posts": "1"}
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as resp:
        data: dict[str, Any] = await resp.json()
    retries: dict[str, int] = data["posts"]["retries"]
    return retries


async def sink_run(count: int = 1_000_000) -> dict[str, Any]:
    """(c): retry_messages with an NDJSON sink over ``count`` IDs (none exist on the server:
    one POST each, answered 400), RSS growth of this process."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        simulator_process("--rate-limit", "100000") as (base, campaign, key),
    ):
        out = os.path.join(tmp, "results.ndjson")
        async with PostmanClient(
            api_key=key, campaign_id=campaign, base_url=base, rate_limit=100_000
        ) as client:
            orchestrator = RetryOrchestrator(client, diagnose_skips=False, keep_messages=False)
            await orchestrator.retry_messages((f"message_{n}" for n in range(1000)), sink=out)
            base_rss = _peak_kb()
            started = time.monotonic()
            ids = (f"message_{n:07d}" for n in range(count))
            report = await orchestrator.retry_messages(ids, sink=out)
            elapsed = time.monotonic() - started
        lines = _count_lines(out)
    return {
        "ids": count,
        "results_written": lines,
        "calls": report.calls,
        "elapsed_s": round(elapsed, 1),
        "peak_rss_growth_mb": round((_peak_kb() - base_rss) / 1024, 1),
    }


def _count_lines(path: str) -> int:
    with open(path, encoding="utf-8") as handle:
        return sum(1 for _ in handle)


def _peak_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=("fast", "real", "sink"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rate", type=float, default=300.0, help="the raised rate for (a)")
    args = parser.parse_args()
    parts = [args.only] if args.only else ["fast", "real", "sink"]
    results: dict[str, Any] = {}
    for part in parts:
        if part == "fast":
            n = 20_000 if args.quick else 100_000
            results[part] = asyncio.run(run_job(n, args.rate, 2, None))
        elif part == "real":
            seconds = 60.0 if args.quick else 300.0
            results[part] = asyncio.run(run_job(int(seconds * 10) + 500, 10.0, 2, seconds))
        else:
            results[part] = asyncio.run(sink_run(100_000 if args.quick else 1_000_000))
        print(part)
        print(table(list(results[part].items())), flush=True)
    if not args.quick:
        path = HERE / "jobs.json"
        previous = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**previous, **results}, indent=1))


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    main()
