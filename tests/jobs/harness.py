"""Helpers for the job tests (fixtures in conftest.py). Real processes: one redis-server (AOF
on, ``appendfsync always``, as the README requires) for the session, the simulator in its own
process per test, and taskiq worker processes (``python -m postman_async.jobs.worker``)
started, killed, stopped and resumed by the tests. Ground truth is the simulator's ledger of
every POST it processed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from typing import Any

import aiohttp
import redis.asyncio as aioredis
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError

from postman_async.jobs import JobSettings, JobStore

from ..helpers import HANG_GUARD, wait_for_condition
from ..redis_server import RedisServer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: Short enough that a crashed holder's chunk is taken over within seconds: its lease lapses
#: after 1 s, and the supervisors re-kick a stalled chunk at most every 2 lease TTLs. The HTTP
#: timeout stays well above a loaded machine's answer times: a POST cut off by it and then
#: processed late by the server would be read too early.
FAST = {"lease_ttl": 1.0, "window": 0.5, "http_timeout": 2.0}


class Workers:
    """Worker processes of one test; each is stopped (or killed) at the end."""

    def __init__(self, redis_url: str, api_key: str, campaign_id: str, base_url: str) -> None:
        # A worker serves the campaigns of its own configuration (here: the environment).
        self.env = dict(
            os.environ,
            POSTMAN_ASYNC_REDIS_URL=redis_url,
            POSTMAN_API_KEY=api_key,
            POSTMAN_CAMPAIGN_ID=campaign_id,
            POSTMAN_BASE_URL=base_url,
            POSTMAN_RATE_LIMIT="1000",  # the most a job may ask for (the tests ask for 1000)
        )
        self.env.pop("POSTMAN_ASYNC_FAILPOINTS", None)
        self.env.pop("POSTMAN_API_KEY_FILE", None)
        self.env.pop("POSTMAN_ASYNC_CAMPAIGNS_FILE", None)
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        failpoints: str = "",
        concurrency: int = 8,
        mutation: str | None = None,
        log: str | None = None,
        transient_pause: float | None = None,
    ) -> subprocess.Popen[bytes]:
        """A worker process; ``mutation``: a deliberately broken one (tests/jobs/mutants.py);
        ``log``: a file for its stderr; ``transient_pause``: its pause after a transient
        error, shortened (tests/jobs/tuned_worker.py)."""
        env = dict(self.env, POSTMAN_ASYNC_FAILPOINTS=failpoints)
        module = ["postman_async.jobs.worker"]
        if mutation:
            assert transient_pause is None
            module = ["tests.jobs.mutants", mutation]
        elif transient_pause is not None:
            module = ["tests.jobs.tuned_worker", str(transient_pause)]
        args = ["--concurrency", str(concurrency), "--supervise-every", "0.5"]
        with open(log or os.devnull, "ab") as stderr:  # the child keeps its own copy
            proc = subprocess.Popen(
                [sys.executable, "-m", *module, *args],
                env=env,
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Sim:
    def __init__(self, base_url: str, campaign_id: str, api_key: str, ids: list[str]) -> None:
        self.base_url, self.campaign_id, self.api_key, self.ids = (
            base_url,
            campaign_id,
            api_key,
            ids,
        )

    def settings(self, **overrides: Any) -> JobSettings:
        args: dict[str, Any] = {
            "campaign_id": self.campaign_id,
            "base_url": self.base_url,
            "chunks": 4,
            "rate": 1000.0,
            **FAST,
        }
        args.update(overrides)
        return JobSettings(**args)

    async def stats(self) -> dict[str, Any]:
        url = self.base_url.replace("/api/v2", "/__simulator__/stats")
        params = {"campaign": self.campaign_id, "posts": "1"}
        async with aiohttp.ClientSession() as session, session.get(url, params=params) as resp:
            data: dict[str, Any] = await resp.json()
            return data


async def wait_finished(store: JobStore, timeout: float = HANG_GUARD) -> None:
    async def finished() -> bool:
        return (await store.progress()).finished

    try:
        await wait_for_condition(finished, "the job to finish", timeout=timeout, interval=0.05)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {(await store.progress()).to_dict()}") from None


async def serving(redis: aioredis.Redis) -> bool:
    """Redis answers commands (after a restart it refuses them while it loads its AOF)."""
    try:
        return bool(await redis.ping())
    except (BusyLoadingError, RedisConnectionError):
        return False


async def restart_redis(
    server: RedisServer, redis: aioredis.Redis, *, lose_data: bool = False
) -> None:
    """Restart the job Redis (``lose_data``: as a restart without AOF would) and wait until it
    serves again: the port answers before the AOF is loaded."""
    await asyncio.to_thread(server.restart, lose_data=lose_data)
    await redis.connection_pool.disconnect()
    await wait_for_condition(lambda: serving(redis), "Redis to serve after its restart")


async def results_by_id(store: JobStore) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    async for result in store.results():
        assert result["messageId"] not in out, f"two results for {result['messageId']}"
        out[result["messageId"]] = result
    return out


def assert_against_ground_truth(
    results: dict[str, dict[str, Any]], distinct: set[str], stats: dict[str, Any]
) -> None:
    """One result per distinct input, ID by ID; at most one retry POST per message; a
    ``retried`` result exactly when the server accepted a retry of that message."""
    assert set(results) == distinct
    posts = stats["posts"]
    assert max(posts["retries"].values(), default=0) <= 1, "a second POST for one message"
    accepted = set(posts["acceptedRetries"])
    retried = {i for i, r in results.items() if r["outcome"] == "retried"}
    assert retried == accepted, json.dumps(
        {
            "retried_not_accepted": sorted(retried - accepted),
            "accepted_not_retried": sorted(accepted - retried),
        }
    )
