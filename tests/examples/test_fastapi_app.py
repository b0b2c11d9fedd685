"""The FastAPI example against the simulator, driven with httpx's ASGI transport: an OTP goes
ahead of a background retry job that saturates the campaign's budget."""

from __future__ import annotations

import asyncio

import httpx

from examples.fastapi_app.app import create_app
from examples.worker import retry_from_queue
from postman_async import MessageStatus, PostmanClient

from ..helpers import assert_no_leftover_tasks

FAILED = (MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")


async def test_otp_stays_fast_while_retry_job_runs(make_sim) -> None:
    sim = await make_sim(rate_limit=20.0)
    ids = [sim.create_message(outcome=FAILED).id for _ in range(60)]
    app = create_app(sim.api_key, sim.campaign_id, base_url=sim.base_url, rate_limit=20.0)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            job = (await http.post("/retry-jobs", json={"message_ids": ids})).json()["job_id"]
            await asyncio.sleep(0.5)
            ahead = []
            for _ in range(5):
                arrived_before = len(sim.request_log)
                response = await http.post("/otp", json={"phone": "+65 9123 4567"})
                log = sim.request_log[arrived_before:]
                ahead.append([r.route.endswith("/messages") for r in log].index(True))
                assert response.status_code == 201, response.text
                await asyncio.sleep(0.2)
            bad = await http.post("/otp", json={"phone": "12"})
            assert bad.status_code == 422
            while (view := (await http.get(f"/retry-jobs/{job}")).json())["state"] == "running":  # noqa: ASYNC110 - polling the API as a client would
                await asyncio.sleep(0.1)
            assert (await http.get("/retry-jobs/nope")).status_code == 404
    assert view["state"] == "done" and view["result"]["counts"]["retried"] == 60
    # Counted in arrivals, not wall time: behind the job's queued calls it would be ~16.
    assert max(ahead) <= 2, ahead
    assert sim.stats().throttled == 0
    assert (
        sum(
            1
            for m in sim.messages.values()
            if m.recipient == "6591234567" and m.values["body"].startswith("Your one-time password")
        )
        == 5
    )


async def test_shutdown_cancels_running_jobs(make_sim) -> None:
    sim = await make_sim(rate_limit=5.0)
    ids = [sim.create_message(outcome=FAILED).id for _ in range(50)]
    app = create_app(sim.api_key, sim.campaign_id, base_url=sim.base_url, rate_limit=5.0)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            await http.post("/retry-jobs", json={"message_ids": ids})
            await asyncio.sleep(0.3)
    assert_no_leftover_tasks()
    assert sum(sim.posts.retries.values()) < 50


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
