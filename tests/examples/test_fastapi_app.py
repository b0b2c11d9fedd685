"""The FastAPI example against the simulator, driven with httpx's ASGI transport, with its
retry jobs in a real Redis run by a real worker process: an OTP goes ahead of a job that
saturates the campaign's budget, and any replica reads, streams and cancels jobs.

Its guards: a bearer token on every route, jobs visible to their caller only, bounded bodies
and ID lists, 422 for bad input, OTPs limited per caller across replicas, a clear error for
missing configuration; and the README's run command, under uvicorn in its own process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from fastapi.routing import APIRoute

from examples.fastapi_app.app import app_from_env, create_app
from examples.worker import retry_from_queue
from postman_async import MessageStatus, PostmanClient
from postman_async.jobs import JobSettings, JobStore
from postman_async.testing import PostmanSimulator
from postman_async.testing.process import free_port

from ..helpers import wait_for_condition
from ..jobs.harness import Workers
from ..redis_server import RedisServer

FAILED = (MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")
TOKENS = {"alice": secrets.token_urlsafe(32), "bob": secrets.token_urlsafe(32)}
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
JSON = {"Content-Type": "application/json"}


def auth(caller: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[caller]}"}


def sends(sim: PostmanSimulator) -> int:
    """SMS sent (``POST .../messages`` accepted) by the simulator."""
    return sum(r.method == "POST" and r.route.endswith("/messages") for r in sim.request_log)


def make_app(sim: PostmanSimulator, job_redis: RedisServer, **options: Any) -> FastAPI:
    options = {"base_url": sim.base_url, "rate_limit": 20.0, **options}
    return create_app(
        sim.api_key, sim.campaign_id, redis_url=job_redis.url, tokens=TOKENS, **options
    )


@contextlib.asynccontextmanager
async def serving(app: FastAPI, caller: str | None = "alice") -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan; requests carry ``caller``'s token unless told otherwise."""
    headers = auth(caller) if caller else {}
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://app", headers=headers
        ) as http:
            yield http


async def finished(http: httpx.AsyncClient, job_id: str) -> dict[str, object]:
    view: dict[str, object] = {}

    async def ended() -> bool:
        view.update((await http.get(f"/retry-jobs/{job_id}")).json())
        return view["state"] in ("finished", "cancelled")

    await wait_for_condition(ended, f"job {job_id} to finish", interval=0.1)
    return view


async def test_otp_goes_ahead_of_a_redis_job_that_any_replica_can_read(
    make_sim, job_redis: RedisServer, redis: object
) -> None:
    sim = await make_sim(rate_limit=20.0)
    ids = [sim.create_message(outcome=FAILED).id for _ in range(60)]
    workers = Workers(job_redis.url, sim.api_key, sim.campaign_id, sim.base_url)
    workers.start(concurrency=4)
    try:
        async with (
            serving(make_app(sim, job_redis)) as http,
            serving(make_app(sim, job_redis)) as replica,
        ):
            created = (await http.post("/retry-jobs", json={"messageIds": ids})).json()
            assert "job_id" not in created and created["state"] == "running"
            job = created["jobId"]
            await wait_for_condition(lambda: bool(sim.posts.retries), "the workers to start")
            ahead = []
            for _ in range(5):
                arrived_before = len(sim.request_log)
                response = await http.post("/otp", json={"phone": "+65 9123 4567"})
                log = sim.request_log[arrived_before:]
                ahead.append([r.route.endswith("/messages") for r in log].index(True))
                assert response.status_code == 201, response.text
                assert set(response.json()) == {"messageId", "status"}
                await asyncio.sleep(0.2)
            assert (await http.post("/otp", json={"phone": "12"})).status_code == 422
            view = await finished(replica, job)
            lines = (await replica.get(f"/retry-jobs/{job}/results")).text.splitlines()
            assert (await replica.get("/retry-jobs/nope")).status_code == 404
    finally:
        await asyncio.to_thread(workers.stop_all)
    assert view["counts"] == {"retried": 60} and view["jobId"] == job
    assert sorted(json.loads(line)["messageId"] for line in lines) == sorted(ids)
    # Counted in arrivals, not wall time: behind the job's queued calls it would be many more.
    assert max(ahead) <= 3, ahead
    assert sim.stats().throttled == 0
    assert all(sim.posts.retries[i] == 1 for i in ids)


async def test_a_job_outlives_the_app_and_a_replica_cancels_it(
    make_sim, job_redis: RedisServer, redis: object
) -> None:
    sim = await make_sim(rate_limit=20.0)
    ids = [sim.create_message(outcome=FAILED).id for _ in range(20)]
    async with serving(make_app(sim, job_redis)) as http:
        job = (await http.post("/retry-jobs", json={"messageIds": ids})).json()["jobId"]
    # The app is gone (a redeploy); the job is in Redis. No worker has run it yet.
    async with serving(make_app(sim, job_redis)) as replica:
        assert (await replica.get(f"/retry-jobs/{job}")).json()["state"] == "running"
        assert (await replica.delete(f"/retry-jobs/{job}")).json()["state"] == "cancelling"
        workers = Workers(job_redis.url, sim.api_key, sim.campaign_id, sim.base_url)
        workers.start()
        try:
            view = await finished(replica, job)
        finally:
            await asyncio.to_thread(workers.stop_all)
    assert view["state"] == "cancelled" and view["counts"] == {"cancelled": 20}
    assert not sim.posts.retries


async def test_a_job_lost_by_redis_is_410_and_resubmitting_its_jobid_posts_nothing_twice(
    make_sim, job_redis: RedisServer, redis: Any
) -> None:
    """FLUSHALL mid-job: the caller's job is a 410, and POSTing the same ``jobId`` again
    reads each ID before any POST (no attempt counts here: the time rule decides)."""
    sim = await make_sim(rate_limit=20.0)
    # Failed an hour ago (``create_message``'s default age): well before the job, beyond the
    # time rule's 1 s clock-skew allowance.
    ids = [sim.create_message(outcome=FAILED).id for _ in range(40)]
    workers = Workers(job_redis.url, sim.api_key, sim.campaign_id, sim.base_url)
    workers.start(concurrency=2)
    body = {"messageIds": ids, "jobId": "nightly-7"}
    try:
        # A 2 s HTTP timeout: the job submitted again waits that (plus the window) to read.
        async with serving(make_app(sim, job_redis, job_http_timeout=2.0)) as http:
            assert (await http.post("/retry-jobs", json=body)).json()["jobId"] == "nightly-7"
            await wait_for_condition(lambda: len(sim.posts.accepted_retries) >= 10, "10 retries")
            await redis.flushall()
            before = set(sim.posts.accepted_retries)
            lost = await http.get("/retry-jobs/nightly-7")

            async def told() -> bool:  # until a worker has recorded the loss
                nonlocal lost
                lost = await http.get("/retry-jobs/nightly-7")
                return lost.status_code == 410

            await wait_for_condition(told, "a worker to record the loss")
            assert "same jobId" in lost.text, lost.text
            # What told the loss (when it fails: the lost job's start the new one reads from)
            tombs = [await redis.hgetall(k) async for k in redis.scan_iter(match="*:lost:*")]
            again = await http.post("/retry-jobs", json=body)
            assert again.status_code == 202, again.text
            view = await finished(http, "nightly-7")
            lines = (await http.get("/retry-jobs/nightly-7/results")).text.splitlines()
            done = (await http.delete("/retry-jobs/nightly-7")).json()
    finally:
        await asyncio.to_thread(workers.stop_all)
    assert view["counts"] == {"retried": 40}, (view, tombs, lines[:2])
    results = {r["messageId"]: r for r in map(json.loads, lines)}
    posts = {i: (sim.posts.retries[i], results[i]["detail"]) for i in ids}
    assert all(n == 1 for n, _ in posts.values()), f"not one retry POST each: {posts}"
    assert all("retried earlier (found by read-back" in results[i]["detail"] for i in before)
    assert done["state"] == "finished"  # DELETE of a finished job changes nothing


# -- authentication -------------------------------------------------------------------------


async def test_every_route_needs_a_valid_bearer_token(
    make_sim, job_redis: RedisServer, redis: aioredis.Redis
) -> None:
    sim = await make_sim()
    app = make_app(sim, job_redis)
    routes = [(m, r.path) for r in app.routes if isinstance(r, APIRoute) for m in r.methods]
    assert sorted(routes) == [
        ("DELETE", "/retry-jobs/{job_id}"),
        ("GET", "/retry-jobs/{job_id}"),
        ("GET", "/retry-jobs/{job_id}/results"),
        ("POST", "/otp"),
        ("POST", "/retry-jobs"),
    ]
    invalid = 'Bearer error="invalid_token"'
    wrong: list[tuple[dict[str, Any], str]] = [
        ({}, "Bearer"),
        ({"Authorization": "Bearer"}, "Bearer"),
        ({"Authorization": f"Basic {TOKENS['alice']}"}, "Bearer"),
        ({"Authorization": "Bearer " + secrets.token_urlsafe(32)}, invalid),
        ({"Authorization": f"Bearer {TOKENS['alice'][:-1]}"}, invalid),
        ({"Authorization": f"Bearer {TOKENS['alice']}x"}, invalid),
        # non-ASCII bytes (compare_digest refuses non-ASCII str: no 500 from them)
        ({"Authorization": "Bearer é".encode() + TOKENS["alice"].encode()}, invalid),
    ]
    bodies = {"/otp": {"phone": "6591234567"}, "/retry-jobs": {"messageIds": ["m1"]}}
    async with serving(app, caller=None) as http:
        for method, path in routes:
            url = path.replace("{job_id}", "j1")
            for headers, challenge in wrong:
                response = await http.request(method, url, headers=headers, json=bodies.get(path))
                assert response.status_code == 401, (method, path, headers)
                assert response.headers["www-authenticate"] == challenge
            # A bad body is not looked at before the token.
            response = await http.request(method, url, content=b"{not json", headers=JSON)
            assert response.status_code == 401, (method, path)
        response = await http.post("/otp", content=b"{", headers={**auth("bob"), **JSON})
        assert response.status_code == 422
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert (await http.get(path)).status_code == 404
    assert not sim.request_log  # no SMS went out
    assert not await redis.keys("postman_async:job:*")  # no job was created


# -- ownership ------------------------------------------------------------------------------


async def test_a_caller_sees_only_its_own_jobs(
    make_sim, job_redis: RedisServer, redis: aioredis.Redis
) -> None:
    sim = await make_sim()
    ids = [sim.create_message(outcome=FAILED).id for _ in range(5)]
    # A job created with the CLI / the library, not through the app.
    await JobStore(redis, "nightly-1").create(JobSettings(campaign_id=sim.campaign_id))
    app = make_app(sim, job_redis)
    async with serving(app, "alice") as alice:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as bob:
            bob.headers.update(auth("bob"))
            job = (await alice.post("/retry-jobs", json={"messageIds": ids})).json()["jobId"]
            for other in (
                f"/retry-jobs/{job}",
                f"/retry-jobs/{job}/results",
                "/retry-jobs/nightly-1",
                "/retry-jobs/nightly-1/results",
                # neither the Redis ids themselves
                f"/retry-jobs/api.alice.{job}",
                f"/retry-jobs/api.alice.{job}/results",
            ):
                response = await bob.get(other)
                assert response.status_code == 404, other
                assert response.json() == {"detail": "no such job"}
            assert (await bob.delete(f"/retry-jobs/{job}")).status_code == 404
            assert (await bob.delete(f"/retry-jobs/api.alice.{job}")).status_code == 404
            for client in (alice, bob):
                assert (await client.get("/retry-jobs/nightly-1")).status_code == 404
                assert (await client.delete("/retry-jobs/nightly-1")).status_code == 404
            # Alice's job is untouched by bob's attempts, and hers to read.
            view = (await alice.get(f"/retry-jobs/{job}")).json()
            assert view["state"] == "running" and view["jobId"] == job
            assert (await alice.get(f"/retry-jobs/{job}/results")).status_code == 200
    assert not (await JobStore(redis, "nightly-1").progress()).cancelled
    assert (await JobStore(redis, f"api.alice.{job}").progress()).distinct == 5


# -- bounded, validated input ---------------------------------------------------------------


async def test_oversized_bodies_get_413_announced_or_chunked(
    make_sim, job_redis: RedisServer, redis: aioredis.Redis
) -> None:
    sim = await make_sim()
    limit = 2000
    big = json.dumps({"messageIds": [f"m{n:05d}" for n in range(300)]}).encode()
    assert len(big) > limit

    async def chunked(data: bytes, size: int = 500) -> AsyncIterator[bytes]:
        for start in range(0, len(data), size):
            yield data[start : start + size]

    async with serving(make_app(sim, job_redis, max_body_bytes=limit)) as http:
        # Announced by Content-Length: refused before a byte of it is read.
        response = await http.post(
            "/retry-jobs", content=b"{}", headers={"Content-Length": str(10**9)}
        )
        assert response.status_code == 413, response.text
        assert response.json() == {"detail": f"request body larger than {limit} bytes"}
        assert (await http.post("/retry-jobs", content=big, headers=JSON)).status_code == 413
        # Streamed without a length (chunked): counted while it arrives.
        request = http.build_request("POST", "/retry-jobs", content=chunked(big), headers=JSON)
        assert "content-length" not in request.headers
        assert request.headers["transfer-encoding"] == "chunked"
        response = await http.send(request)
        assert response.status_code == 413, response.text
        bad = await http.post("/retry-jobs", content=b"{}", headers={"Content-Length": "-1"})
        assert bad.status_code == 400
        # Within the limit, chunked or not, the same request goes through.
        small = json.dumps({"messageIds": ["m00001", "m00002"]}).encode()
        response = await http.post("/retry-jobs", content=small, headers=JSON)
        assert response.status_code == 202, response.text
        request = http.build_request("POST", "/retry-jobs", content=chunked(small, 7), headers=JSON)
        assert (await http.send(request)).status_code == 202
    assert len(await redis.smembers("postman_async:job:active")) == 2


async def test_id_lists_are_bounded_and_validated(
    make_sim, job_redis: RedisServer, redis: aioredis.Redis
) -> None:
    sim = await make_sim()
    async with serving(make_app(sim, job_redis, max_ids=5)) as http:
        response = await http.post("/retry-jobs", json={"messageIds": ["m1"] * 6})
        assert response.status_code == 422
        assert response.json()["detail"][0]["loc"] == ["body", "messageIds"]
        assert "at most 5" in response.json()["detail"][0]["msg"]
        assert (await http.post("/retry-jobs", json={"messageIds": []})).status_code == 422
        response = await http.post("/retry-jobs", json={"messageIds": ["m1", "../etc/passwd"]})
        assert response.status_code == 422
        (error,) = response.json()["detail"]
        assert error["loc"] == ["body", "messageIds", 1]
        assert "'../etc/passwd'" in error["msg"] and error["input"] == "../etc/passwd"
        # snake_case keys are refused, not ignored: one convention, camelCase.
        response = await http.post("/retry-jobs", json={"message_ids": ["m1"]})
        assert response.status_code == 422
        # a body of many bad IDs: a bounded answer that does not echo them all back
        response = await http.post("/retry-jobs", json={"messageIds": ["x" * 300] * 5})
        body = response.json()
        assert response.status_code == 422 and len(body["detail"]) == 5
        assert all("input" not in e for e in body["detail"])
        assert (await http.post("/retry-jobs", json={"messageIds": ["m1"] * 5})).status_code == 202
    async with serving(make_app(sim, job_redis)) as http:
        many = [f"bad id {n}" for n in range(50)]
        body = (await http.post("/retry-jobs", json={"messageIds": many})).json()
        assert len(body["detail"]) == 20 and body["omittedErrors"] == 30
    assert not sim.request_log


async def test_a_bad_budget_share_is_422(
    make_sim, job_redis: RedisServer, redis: aioredis.Redis
) -> None:
    sim = await make_sim()
    async with serving(make_app(sim, job_redis)) as http:
        for share in (5, 0, -1, "x", 1.0000001, None, [0.5]):
            response = await http.post(
                "/retry-jobs", json={"messageIds": ["m1"], "budgetShare": share}
            )
            assert response.status_code == 422, (share, response.text)
            assert response.json()["detail"][0]["loc"] == ["body", "budgetShare"]
        # NaN and Infinity (which Python's json reads) too
        for literal in (b"NaN", b"Infinity"):
            body = b'{"messageIds": ["m1"], "budgetShare": ' + literal + b"}"
            response = await http.post("/retry-jobs", content=body, headers=JSON)
            assert response.status_code == 422, literal
        ok = await http.post("/retry-jobs", json={"messageIds": ["m1"], "budgetShare": 0.25})
        assert ok.status_code == 202
        settings = await JobStore(redis, f"api.alice.{ok.json()['jobId']}").require_settings()
        assert settings.budget_share == 0.25 and settings.campaign_id == sim.campaign_id


async def test_otps_are_limited_per_caller_across_replicas(
    make_sim, job_redis: RedisServer, redis: aioredis.Redis
) -> None:
    sim = await make_sim()
    options = {"otp_per_minute": 3}
    async with (
        serving(make_app(sim, job_redis, **options), "alice") as alice,
        serving(make_app(sim, job_redis, **options), "alice") as alice_on_replica,
        serving(make_app(sim, job_redis, **options), "bob") as bob,
    ):
        otp = {"phone": "6591234567"}
        for http in (alice, alice, alice_on_replica):
            assert (await http.post("/otp", json=otp)).status_code == 201
        for http in (alice, alice_on_replica):
            response = await http.post("/otp", json=otp)
            assert response.status_code == 429, response.text
            assert 1 <= int(response.headers["retry-after"]) <= 60
        # A bad number is a 422 and not counted; another caller still gets through.
        assert (await bob.post("/otp", json={"phone": "12"})).status_code == 422
        for _ in range(3):
            assert (await bob.post("/otp", json=otp)).status_code == 201
        assert (await bob.post("/otp", json=otp)).status_code == 429
    assert sends(sim) == 6


# -- configuration --------------------------------------------------------------------------


async def test_missing_configuration_is_a_clear_startup_error(
    make_sim, job_redis: RedisServer, tmp_path: Path
) -> None:
    with pytest.raises(RuntimeError) as missing:
        app_from_env({})
    for name in (
        "POSTMAN_API_KEY",
        "POSTMAN_CAMPAIGN_ID",
        "POSTMAN_ASYNC_REDIS_URL",
        "POSTMAN_EXAMPLE_TOKENS",
    ):
        assert name in str(missing.value)
    env = {
        "POSTMAN_API_KEY": "key_test_" + "a" * 32,
        "POSTMAN_CAMPAIGN_ID": "campaign_1",
        "POSTMAN_ASYNC_REDIS_URL": job_redis.url,
    }
    with pytest.raises(RuntimeError, match="POSTMAN_EXAMPLE_TOKENS"):
        app_from_env(env)
    with pytest.raises(RuntimeError, match="at least 16 characters"):
        app_from_env({**env, "POSTMAN_EXAMPLE_TOKENS": "alice:short"})
    with pytest.raises(RuntimeError, match="same token"):
        app_from_env({**env, "POSTMAN_EXAMPLE_TOKENS": f"a:{'t' * 20},b:{'t' * 20}"})
    with pytest.raises(RuntimeError, match="POSTMAN_EXAMPLE_TOKENS_FILE"):
        app_from_env({**env, "POSTMAN_EXAMPLE_TOKENS_FILE": str(tmp_path / "absent")})
    with pytest.raises(RuntimeError, match="POSTMAN_EXAMPLE_MAX_IDS"):
        tokens = f"a:{'t' * 20}"
        app_from_env({**env, "POSTMAN_EXAMPLE_TOKENS": tokens, "POSTMAN_EXAMPLE_MAX_IDS": "0"})
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text(f"# callers\nalice:{TOKENS['alice']}\n\nbob:{TOKENS['bob']}\n")
    app_from_env({**env, "POSTMAN_EXAMPLE_TOKENS_FILE": str(tokens_file)})
    with pytest.raises(RuntimeError, match="no bearer token"):
        create_app("key", "campaign_1", redis_url=job_redis.url, tokens={})
    # Redis unreachable: the lifespan (the server's start-up) fails, naming the variable.
    sim = await make_sim()
    port = free_port()
    app = create_app(
        sim.api_key, sim.campaign_id, redis_url=f"redis://:pw@127.0.0.1:{port}/0", tokens=TOKENS
    )
    with pytest.raises(RuntimeError, match="POSTMAN_ASYNC_REDIS_URL") as unreachable:
        async with app.router.lifespan_context(app):
            pass
    assert ":pw@" not in str(unreachable.value)


# -- the README's command, under uvicorn ----------------------------------------------------


def readme_run_command() -> tuple[list[str], set[str]]:
    """The uvicorn command of the README's "FastAPI and workers" section, and the variables
    its block exports."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## FastAPI and workers", 1)[1].split("\n## ", 1)[0]
    (block,) = [b for b in re.findall(r"```bash\n(.*?)```", section, re.S) if "uvicorn " in b]
    lines = [line.split(" #", 1)[0] for line in block.splitlines()]
    (command,) = [line for line in lines if line.startswith("uvicorn ")]
    exports = " ".join(line for line in lines if line.startswith("export "))
    return shlex.split(command), set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", exports))


class Uvicorn:
    """``uvicorn ...`` in its own process; stopped by its PID."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )

    async def wait_listening(self, port: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"uvicorn exited: {self.log.read_text()}")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            return
        raise AssertionError(f"uvicorn did not listen within {timeout}s: {self.log.read_text()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            return self.proc.wait()


def uvicorn_argv(port: int) -> list[str]:
    argv, _ = readme_run_command()
    assert argv[:2] == ["uvicorn", "examples.fastapi_app.app:app"], argv
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    binary = Path(sys.executable).parent / "uvicorn"
    assert binary.exists(), "pip install -e '.[examples]' installs uvicorn"
    return [str(binary), *argv[1:]]


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("POSTMAN_")}


async def test_the_readme_command_serves_under_uvicorn(
    make_sim, job_redis: RedisServer, redis: aioredis.Redis, tmp_path: Path
) -> None:
    sim = await make_sim()
    port = free_port()
    env = {
        **clean_env(),
        "POSTMAN_API_KEY": sim.api_key,
        "POSTMAN_CAMPAIGN_ID": sim.campaign_id,
        "POSTMAN_BASE_URL": sim.base_url,
        "POSTMAN_ASYNC_REDIS_URL": job_redis.url,
        "POSTMAN_EXAMPLE_TOKENS": ",".join(f"{k}:{v}" for k, v in TOKENS.items()),
        "POSTMAN_EXAMPLE_MAX_BODY_BYTES": "1000",
    }
    _, exported = readme_run_command()
    assert exported >= {"POSTMAN_API_KEY", "POSTMAN_CAMPAIGN_ID", "POSTMAN_ASYNC_REDIS_URL"}
    assert exported - set(env) <= {"POSTMAN_API_KEY_FILE", "POSTMAN_EXAMPLE_TOKENS_FILE"}
    server = Uvicorn(uvicorn_argv(port), env, tmp_path / "uvicorn.log")
    try:
        await server.wait_listening(port)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            response = await http.post("/otp", json={"phone": "6591234567"})
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            response = await http.post("/otp", json={"phone": "6591234567"}, headers=auth("alice"))
            assert response.status_code == 201, response.text
            assert sends(sim) == 1

            async def chunked() -> AsyncIterator[bytes]:
                yield b" " * 1100  # over the limit: the server has its answer ready
                await asyncio.sleep(0.05)
                yield b" " * 500  # and the client is still sending

            # Over real HTTP, the client reads its 413 (no connection reset), chunked or not.
            for _ in range(5):
                response = await http.post(
                    "/retry-jobs", content=chunked(), headers={**auth("bob"), **JSON}
                )
                assert response.status_code == 413
                response = await http.post(
                    "/retry-jobs", content=b" " * 1800, headers={**auth("bob"), **JSON}
                )
                assert response.status_code == 413
    finally:
        code = await asyncio.to_thread(server.stop)
    log = server.log.read_text()
    # uvicorn shuts down cleanly on SIGTERM, then re-raises it (an exit "by" the signal).
    assert code in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log, log


def test_uvicorn_without_configuration_exits_naming_it(tmp_path: Path) -> None:
    port = free_port()
    server = Uvicorn(uvicorn_argv(port), clean_env(), tmp_path / "uvicorn.log")
    try:
        code = server.proc.wait(timeout=30)
    finally:
        server.stop()
    log = server.log.read_text()
    assert code != 0, log
    assert "POSTMAN_EXAMPLE_TOKENS" in log and "POSTMAN_API_KEY" in log, log
    assert "Application startup failed" in log, log


# -- other examples -------------------------------------------------------------------------


async def test_queue_worker(make_sim) -> None:
    sim = await make_sim()
    ids = [sim.create_message(outcome=FAILED).id for _ in range(30)]
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    async with PostmanClient(
        api_key=sim.api_key, campaign_id=sim.campaign_id, base_url=sim.base_url, rate_limit=1000
    ) as client:
        worker = asyncio.ensure_future(retry_from_queue(client, queue))
        for message_id in [*ids, ids[0]]:
            await queue.put(message_id)
            await asyncio.sleep(0)
        await queue.put(None)
        report = await worker
    assert len(report) == 30 and report.duplicates == 1
    assert all(sim.posts.retries[i] == 1 for i in ids)


def test_console_traces_print_a_span_per_api_call(tmp_path: object) -> None:
    """In its own process: tracer providers are process-wide."""
    code = """
import asyncio
from examples.fastapi_app.app import enable_console_traces
enable_console_traces()
import postman_async as pa
from postman_async.testing import PostmanSimulator
async def main():
    async with PostmanSimulator(rate_limit=1000) as sim:
        async with pa.PostmanClient(sim.api_key, sim.campaign_id, base_url=sim.base_url,
                                    rate_limit=1000) as client:
            await client.send_message("6591234567", "english", {"body": "hi"})
asyncio.run(main())
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert '"name": "postman.call"' in result.stdout
    assert '"postman.endpoint": "/campaigns/{id}/messages"' in result.stdout
    assert "6591234567" not in result.stdout
