"""Per-call options and the retry policy, against the simulator over loopback HTTP; the
structured log fields of each attempt."""

from __future__ import annotations

import logging

import pytest

import postman_async as pa
from postman_async import _logging
from postman_async.testing import Faults, PostmanSimulator

from ..helpers import client_for

FAIL = (pa.MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")


async def test_a_view_shares_session_limiter_and_cap_and_fails_fast(make_sim) -> None:
    sim: PostmanSimulator = await make_sim(faults=Faults(latency=0.5, latency_rate=1.0))
    message_id = sim.create_message("6591234567", outcome=FAIL).id
    async with client_for(sim) as client:
        otp = client.with_options(timeout=0.1, max_retries=0, priority=pa.Priority.HIGH)
        assert otp.priority is pa.Priority.HIGH
        with pytest.raises(pa.PostmanTimeoutError):
            await otp.get_message(message_id)
        assert otp._session() is client._session() and otp.limiter is client.limiter
        assert otp.attempt_cap is client.attempt_cap and otp.calls == client.calls == 1
        await otp.aclose()  # a view closes nothing
        assert (await client.get_message(message_id)).id == message_id  # 30 s timeout: waits
        assert client.calls == 2


async def test_a_policy_that_does_not_retry_429_raises_at_once(make_sim) -> None:
    sim: PostmanSimulator = await make_sim(rate_limit=1.0)
    message_id = sim.create_message("6591234567", outcome=FAIL).id
    bursty = pa.RateLimiter(1000, margin=0.0)  # lets the second call through too soon
    async with client_for(sim, limiter=bursty) as client:
        await client.get_message(message_id)
        strict = client.with_options(retry_policy=pa.RetryPolicy(retry_on_429=False))
        with pytest.raises(pa.TooManyRequestsError):
            await strict.get_message(message_id)
        assert sim.stats().requests == 2 and sim.stats().throttled == 1


def test_policies_and_options_are_checked() -> None:
    with pytest.raises(pa.ValidationError):
        pa.RetryPolicy(max_retries=-1)
    with pytest.raises(pa.ValidationError):
        pa.RetryPolicy(backoff_cap=float("inf"))
    with pytest.raises(pa.ValidationError):
        pa.PostmanClient(
            "key_test_x", "c1", max_retries=1, retry_policy=pa.RetryPolicy(max_retries=2)
        )
    client = pa.PostmanClient("key_test_x", "c1", base_url="http://127.0.0.1:9/api/v2")
    with pytest.raises(pa.ValidationError):
        client.with_options(timeout=0)
    view = client.with_options(max_retries=1).with_options(timeout=3)
    assert view._options.policy == pa.RetryPolicy(max_retries=1)
    assert view._options.timeout == 3


async def test_each_attempt_logs_structured_fields_and_no_recipient(
    make_sim, caplog: pytest.LogCaptureFixture
) -> None:
    sim: PostmanSimulator = await make_sim()
    caplog.set_level(logging.DEBUG, logger="postman_async")
    async with client_for(sim) as client:
        sent = await client.send_message("6591234567", "english", {"body": "secret OTP 4242"})
    (record,) = [r for r in caplog.records if hasattr(r, "postman")]
    fields = record.postman
    assert fields["method"] == "POST" and fields["status"] == 201 and fields["attempt"] == 1
    assert fields["endpoint"].endswith("/messages") and fields["latency_ms"] >= 0
    assert "limiter_wait_ms" in fields and fields["campaign"] == sim.campaign_id
    assert fields["message_id"] is None  # a send's path names no message
    everything = " ".join(f"{r.getMessage()} {getattr(r, 'postman', '')}" for r in caplog.records)
    assert "6591234567" not in everything and "secret OTP" not in everything
    assert sent.id not in fields["endpoint"]  # a send's path names no message


def test_the_environment_switch_adds_a_stderr_handler() -> None:
    logger = logging.getLogger("postman_async")
    assert _logging.configure_from_environment({}) is None
    handler = _logging.configure_from_environment({"POSTMAN_ASYNC_LOG": "debug"})
    try:
        assert handler is not None and logger.level == logging.DEBUG
        record = logging.LogRecord("postman_async", logging.DEBUG, "", 0, "GET /x -> 200", (), None)
        record.postman = {"status": 200, "attempt": 1, "error_id": None}
        assert handler.format(record).endswith("GET /x -> 200 status=200 attempt=1")
    finally:
        assert handler is not None
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
