"""The FastAPI example against the simulator, driven with httpx's ASGI transport, with its
retry jobs in a real Redis run by a real worker process: an OTP goes ahead of a job that
saturates the campaign's budget, and any replica reads, streams and cancels jobs."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI

from examples.fastapi_app.app import create_app
from examples.worker import retry_from_queue
from postman_async import MessageStatus, PostmanClient

from ..jobs.harness import Workers
from ..redis_server import RedisServer

FAILED = (MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            yield http


async def finished(http: httpx.AsyncClient, job_id: str) -> dict[str, object]:
    for _ in range(600):
        view: dict[str, object] = (await http.get(f"/retry-jobs/{job_id}")).json()
        if view["state"] in ("finished", "cancelled"):
            return view
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


async def test_otp_goes_ahead_of_a_redis_job_that_any_replica_can_read(
    make_sim, job_redis: RedisServer, redis: object
) -> None:
    sim = await make_sim(rate_limit=20.0)
    ids = [sim.create_message(outcome=FAILED).id for _ in range(60)]
    options = {"redis_url": job_redis.url, "base_url": sim.base_url, "rate_limit": 20.0}
    workers = Workers(job_redis.url, sim.api_key)
    workers.start(concurrency=4)
    try:
        async with (
            serving(create_app(sim.api_key, sim.campaign_id, **options)) as http,
            serving(create_app(sim.api_key, sim.campaign_id, **options)) as replica,
        ):
            job = (await http.post("/retry-jobs", json={"message_ids": ids})).json()["job_id"]
            while not sim.posts.retries:  # noqa: ASYNC110 - until the workers have started
                await asyncio.sleep(0.05)
            ahead = []
            for _ in range(5):
                arrived_before = len(sim.request_log)
                response = await http.post("/otp", json={"phone": "+65 9123 4567"})
                log = sim.request_log[arrived_before:]
                ahead.append([r.route.endswith("/messages") for r in log].index(True))
                assert response.status_code == 201, response.text
                await asyncio.sleep(0.2)
            assert (await http.post("/otp", json={"phone": "12"})).status_code == 422
            view = await finished(replica, job)
            lines = (await replica.get(f"/retry-jobs/{job}/results")).text.splitlines()
            assert (await replica.get("/retry-jobs/nope")).status_code == 404
    finally:
        await asyncio.to_thread(workers.stop_all)
    assert view["counts"] == {"retried": 60}
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
    options = {"redis_url": job_redis.url, "base_url": sim.base_url, "rate_limit": 20.0}
    async with serving(create_app(sim.api_key, sim.campaign_id, **options)) as http:
        job = (await http.post("/retry-jobs", json={"message_ids": ids})).json()["job_id"]
    # The app is gone (a redeploy); the job is in Redis. No worker has run it yet.
    async with serving(create_app(sim.api_key, sim.campaign_id, **options)) as replica:
        assert (await replica.get(f"/retry-jobs/{job}")).json()["state"] == "running"
        assert (await replica.delete(f"/retry-jobs/{job}")).json()["state"] == "cancelling"
        workers = Workers(job_redis.url, sim.api_key)
        workers.start()
        try:
            view = await finished(replica, job)
        finally:
            await asyncio.to_thread(workers.stop_all)
    assert view["state"] == "cancelled" and view["counts"] == {"cancelled": 20}
    assert not sim.posts.retries


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
    import subprocess
    import sys

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
