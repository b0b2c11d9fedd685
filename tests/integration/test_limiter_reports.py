"""The session tells the limiter's grant what became of each request, over loopback HTTP:
written then answered (any status), lost (written, no answer) or unsent (never written). The
answer clock is only as good as these reports."""

from __future__ import annotations

import socket

import aiohttp
import pytest

import postman_async as pa
from postman_async.models import Priority
from postman_async.testing import Faults, PostmanSimulator

from ..helpers import client_for


class RecordingGrant:
    def __init__(self, log: list[list[str]]) -> None:
        self.events: list[str] = []
        log.append(self.events)

    def written(self) -> None:
        self.events.append("written")

    def answered(self) -> None:
        self.events.append("answered")

    def lost(self) -> None:
        self.events.append("lost")

    def unsent(self) -> None:
        self.events.append("unsent")


class RecordingLimiter:
    """Grants at once; keeps each grant's reports."""

    rate = 1000.0

    def __init__(self) -> None:
        self.grants: list[list[str]] = []

    async def acquire(self, priority: Priority = Priority.HIGH) -> RecordingGrant:
        return RecordingGrant(self.grants)

    async def penalize(self, delay: float, *, retry_after: float | None = None) -> None:
        return None


FAIL = (pa.MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")


async def test_an_answer_of_any_status_is_reported_after_the_write(make_sim) -> None:
    sim: PostmanSimulator = await make_sim()
    message_id = sim.create_message("6591234567", outcome=FAIL).id
    limiter = RecordingLimiter()
    async with client_for(sim, limiter=limiter) as client:
        await client.get_message(message_id)
        with pytest.raises(pa.NotFoundError):
            await client.get_message("message_0000000000000000000000000")
        await client.send_message("6591234567", "english", {"body": "x"})
    assert limiter.grants == [["written", "answered"]] * 3


async def test_a_timeout_after_the_write_is_lost_not_unsent(make_sim) -> None:
    sim: PostmanSimulator = await make_sim(faults=Faults(latency=0.5, latency_rate=1.0))
    message_id = sim.create_message("6591234567", outcome=FAIL).id
    limiter = RecordingLimiter()
    async with client_for(sim, limiter=limiter) as client:
        fast = client.with_options(timeout=0.1, max_retries=0)
        with pytest.raises(pa.PostmanTimeoutError):
            await fast.get_message(message_id)
    assert limiter.grants == [["written", "lost"]]


async def test_a_refused_connection_is_unsent() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    limiter = RecordingLimiter()
    async with pa.PostmanClient(
        api_key="k" * 32,
        campaign_id="campaign_x",
        base_url=f"http://127.0.0.1:{port}/api/v2",
        limiter=limiter,
        retry_policy=pa.RetryPolicy(max_retries=0),
    ) as client:
        with pytest.raises(pa.PostmanConnectionError):
            await client.get_message("message_0000000000000000000000000")
    assert limiter.grants == [["unsent"]]


async def test_with_a_session_passed_in_a_failure_counts_as_possibly_written(make_sim) -> None:
    """Without the SDK's trace hook nothing tells whether the request was written: a timeout
    is lost (it counts), never unsent; a refused connection is still unsent."""
    sim: PostmanSimulator = await make_sim(faults=Faults(latency=0.5, latency_rate=1.0))
    message_id = sim.create_message("6591234567", outcome=FAIL).id
    limiter = RecordingLimiter()
    session = aiohttp.ClientSession()
    async with session, client_for(sim, limiter=limiter, session=session) as client:
        fast = client.with_options(timeout=0.1, max_retries=0)
        with pytest.raises(pa.PostmanTimeoutError):
            await fast.get_message(message_id)
    assert limiter.grants == [["lost"]]
