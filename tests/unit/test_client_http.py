"""The client's HTTP layer against aioresponses: every endpoint, error mapping, retries."""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import AsyncIterator
from unittest import mock

import aiohttp
import pytest
from aioresponses import aioresponses

import postman_async as pa
from postman_async.ratelimit import RateLimiter

KEY = "key_live_S3CRETKEYVALUE"
CID = "campaign_1"
BASE = "https://postman.gov.sg/api/v2"
MSG = f"{BASE}/campaigns/{CID}/messages"
MESSAGE = {
    "id": "message_1",
    "recipient": "6591234567",
    "latestStatus": "created",
    "createdAt": "2024-05-16T10:30:50.904+08:00",
}


class Sleeps:
    """A sleep that returns at once and the clock it moves on (the limiter reads both)."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.now = 0.0

    async def __call__(self, delay: float) -> None:
        self.calls.append(delay)
        self.now += max(0.0, delay)

    def clock(self) -> float:
        return self.now


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
async def client(sleeps: Sleeps) -> AsyncIterator[pa.PostmanClient]:
    limiter = RateLimiter(1000, clock=sleeps.clock, sleep=sleeps)
    async with pa.PostmanClient(
        api_key=KEY,
        campaign_id=CID,
        limiter=limiter,
        sleep=sleeps,
        rng=random.Random(1),
        max_retries=3,
    ) as c:
        yield c


@pytest.fixture
def http() -> AsyncIterator[aioresponses]:
    with aioresponses() as m:
        yield m


def _sent(http: aioresponses, method: str, url: str) -> list[mock._Call]:
    return [
        call
        for (m, u), calls in http.requests.items()
        if m == method and str(u) == url
        for call in calls
    ]


async def test_send_message(client: pa.PostmanClient, http: aioresponses) -> None:
    http.post(MSG, status=201, payload=MESSAGE)
    m = await client.send_message("+65 9123 4567", "English", {"body": "Hi"})
    assert m.id == "message_1" and m.latest_status is pa.MessageStatus.CREATED
    (call,) = _sent(http, "POST", MSG)
    assert call.kwargs["json"] == {
        "recipient": "6591234567",
        "language": "english",
        "values": {"body": "Hi"},
    }
    assert call.kwargs["headers"]["Authorization"] == f"Bearer {KEY}"


async def test_get_retry_and_batch_endpoints(client: pa.PostmanClient, http: aioresponses):
    http.get(f"{MSG}/message_1", payload={**MESSAGE, "attempts": []})
    http.post(f"{MSG}/message_1/retry", status=201, payload=MESSAGE)
    http.post(
        f"{BASE}/campaigns/{CID}/batch/messages",
        status=201,
        payload={"isValid": True, "batchId": "batch_1"},
    )
    http.post(f"{BASE}/campaigns/{CID}/batch/batch_1/retry", status=201, body=b"")
    assert (await client.get_message("message_1")).attempts == ()
    assert (await client.retry_message("message_1")).id == "message_1"
    result = await client.send_batch(
        [{"recipient": "6591234567", "language": "english", "body": "a,b"}]
    )
    assert result.batch_id == "batch_1" and result.is_valid
    (call,) = _sent(http, "POST", f"{BASE}/campaigns/{CID}/batch/messages")
    form = call.kwargs["data"]
    assert isinstance(form, aiohttp.FormData)
    field = form._fields[0]
    assert field[0]["name"] == "file" and field[0]["filename"] == "messages.csv"
    assert field[2] == b'recipient,language,body\r\n6591234567,english,"a,b"\r\n'
    assert await client.retry_batch("batch_1") is None


async def test_send_batch_sources(client: pa.PostmanClient, http: aioresponses, tmp_path) -> None:
    csv_bytes = b"recipient,language,body\n6591234567,english,hi\n"
    path = tmp_path / "in.csv"
    path.write_bytes(csv_bytes)
    url = f"{BASE}/campaigns/{CID}/batch/messages"
    for _ in range(3):
        http.post(url, status=201, payload={"isValid": True, "batchId": "b"})
    await client.send_batch(csv_bytes)
    await client.send_batch(path)
    with path.open("rb") as handle:
        await client.send_batch(handle)
    assert [c.kwargs["data"]._fields[0][2] for c in _sent(http, "POST", url)] == [csv_bytes] * 3
    with pytest.raises(pa.ValidationError):
        await client.send_batch(tmp_path / "missing.csv")
    with pytest.raises(pa.ValidationError):
        await client.send_batch(b"not,a,batch\n")
    assert len(_sent(http, "POST", url)) == 3


def _page(ids: list[str], next_cursor: str | None) -> dict[str, object]:
    return {
        "data": [{"id": i} for i in ids],
        "pageData": {
            "hasNextPage": next_cursor is not None,
            "hasPreviousPage": False,
            "startCursor": "s",
            "endCursor": next_cursor,
        },
    }


async def test_pagination_follows_after_cursor(client: pa.PostmanClient, http: aioresponses):
    url = re.compile(rf"^{re.escape(BASE)}/campaigns/{CID}/batch/b1/messages\?.*$")
    http.get(url, payload=_page(["m1", "m2"], "Y3Vyc29yMQ=="))
    http.get(url, payload=_page(["m3", "m4"], "Y3Vyc29yMg=="))
    http.get(url, payload=_page(["m5"], None))
    ids = [m.id async for m in client.list_batch_messages("b1", page_size=2)]
    assert ids == ["m1", "m2", "m3", "m4", "m5"]
    urls = [str(u) for (meth, u) in http.requests]
    assert any("after=Y3Vyc29yMQ%3D%3D" in u or "after=Y3Vyc29yMQ==" in u for u in urls)
    assert all("limit=2" in u for u in urls)


async def test_pages_and_single_page(client: pa.PostmanClient, http: aioresponses) -> None:
    url = re.compile(rf"^{re.escape(MSG)}\?.*$")
    http.get(url, payload=_page(["m1"], "Yw=="))
    http.get(url, payload=_page(["m2"], None))
    http.get(url, payload=_page(["m9"], None))
    pages = [p async for p in client.list_messages(page_size=1, search="9123").pages()]
    assert [len(p.data) for p in pages] == [1, 1]
    page = await client.list_messages().fetch(after="Yw==")
    assert page.data[0].id == "m9"


async def test_repeating_cursor_is_malformed(client: pa.PostmanClient, http: aioresponses):
    url = re.compile(rf"^{re.escape(MSG)}\?.*$")
    http.get(url, payload=_page(["m1"], "Yw=="), repeat=True)
    with pytest.raises(pa.MalformedResponseError):
        _ = [m async for m in client.list_messages()]


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (400, {"error": {"code": "parameter_invalid", "message": "bad"}}, pa.ParameterInvalidError),
        (400, {"error": {"code": "too_many_message_attempts_error"}}, pa.TooManyAttemptsError),
        (
            400,
            {"error": {"code": "message_not_found_or_retry_message_not_in_failure_status"}},
            pa.MessageNotRetryableError,
        ),
        (400, {"error": {"code": "invalid_ip_address_used"}}, pa.IpNotAllowedError),
        (401, {"message": "Unauthorized", "statusCode": 401}, pa.AuthenticationError),
        (401, {"error": {"code": "invalid_api_key_provided"}}, pa.InvalidApiKeyError),
        (404, {"error": {"code": "not_found"}}, pa.NotFoundError),
    ],
)
async def test_error_answers_raise_typed_errors_without_retry(
    client: pa.PostmanClient, http: aioresponses, status: int, body: object, cls: type
) -> None:
    http.post(f"{MSG}/message_1/retry", status=status, payload=body)
    with pytest.raises(cls) as info:
        await client.retry_message("message_1")
    assert info.value.status == status
    assert len(_sent(http, "POST", f"{MSG}/message_1/retry")) == 1
    assert KEY not in str(info.value) and KEY not in repr(info.value)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("batch_not_found_or_is_not_retryable", pa.BatchNotRetryableError),
        ("unresolved_batch_messages", pa.UnresolvedBatchMessagesError),
        ("no_failed_batch_messages_to_retry", pa.NoFailedBatchMessagesError),
    ],
)
async def test_batch_retry_errors(client: pa.PostmanClient, http: aioresponses, code, cls):
    http.post(
        f"{BASE}/campaigns/{CID}/batch/b1/retry",
        status=400,
        payload={"error": {"code": code, "message": "m", "type": "domain_error"}},
    )
    with pytest.raises(cls):
        await client.retry_batch("b1")


async def test_429_honours_retry_after_seconds_then_succeeds(
    client: pa.PostmanClient, http: aioresponses, sleeps: Sleeps
) -> None:
    http.post(
        MSG,
        status=429,
        headers={"Retry-After": "2"},
        payload={"error": {"code": "too_many_requests"}},
    )
    http.post(MSG, status=201, payload=MESSAGE)
    m = await client.send_message("6591234567", "english", {"body": "x"})
    assert m.id == "message_1"
    assert len(_sent(http, "POST", MSG)) == 2  # a 429 was dropped: re-sending is safe
    assert any(abs(d - 2.0) < 0.01 for d in sleeps.calls)


async def test_429_retry_after_http_date(
    client: pa.PostmanClient, http: aioresponses, sleeps: Sleeps
) -> None:
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    http.get(f"{MSG}/message_1", status=429, headers={"Retry-After": when})
    http.get(f"{MSG}/message_1", payload=MESSAGE)
    await client.get_message("message_1")
    assert any(28 <= d <= 30.5 for d in sleeps.calls)


async def test_429_retry_after_is_capped(
    client: pa.PostmanClient, http: aioresponses, sleeps: Sleeps
) -> None:
    http.get(f"{MSG}/message_1", status=429, headers={"Retry-After": "86400"})
    http.get(f"{MSG}/message_1", payload=MESSAGE)
    await client.get_message("message_1")
    assert max(sleeps.calls) <= 60.0 + 0.01


async def test_429_exhausted_raises_with_retry_after(
    client: pa.PostmanClient, http: aioresponses
) -> None:
    http.get(
        f"{MSG}/message_1",
        status=429,
        headers={"Retry-After": "1"},
        repeat=True,
        payload={"error": {"code": "too_many_requests"}},
    )
    with pytest.raises(pa.TooManyRequestsError) as info:
        await client.get_message("message_1")
    assert info.value.retry_after == 1.0
    assert len(_sent(http, "GET", f"{MSG}/message_1")) == 4  # 1 + max_retries


async def test_get_retried_on_5xx_timeout_and_reset(
    client: pa.PostmanClient, http: aioresponses
) -> None:
    url = f"{MSG}/message_1"
    http.get(url, status=503, body="down")
    http.get(url, exception=asyncio.TimeoutError())
    http.get(url, exception=aiohttp.ServerDisconnectedError())
    http.get(url, payload=MESSAGE)
    assert (await client.get_message("message_1")).id == "message_1"
    assert len(_sent(http, "GET", url)) == 4


async def test_timed_out_send_is_not_resent(client: pa.PostmanClient, http: aioresponses):
    http.post(MSG, exception=asyncio.TimeoutError())
    http.post(MSG, status=201, payload=MESSAGE)
    with pytest.raises(pa.OutcomeUnknownError) as info:
        await client.send_message("6591234567", "english", {"body": "x"})
    assert isinstance(info.value.cause, pa.PostmanTimeoutError)
    assert len(_sent(http, "POST", MSG)) == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_send_after_5xx_is_outcome_unknown(
    client: pa.PostmanClient, http: aioresponses, status: int
) -> None:
    http.post(MSG, status=status, body="err")
    with pytest.raises(pa.OutcomeUnknownError) as info:
        await client.send_message("6591234567", "english", {"body": "x"})
    assert isinstance(info.value.cause, pa.ServerError)
    assert len(_sent(http, "POST", MSG)) == 1


async def test_send_resent_when_connection_failed_before_writing(
    client: pa.PostmanClient, http: aioresponses
) -> None:
    refused = aiohttp.ClientConnectorError(mock.Mock(), OSError(111, "Connection refused"))
    http.post(MSG, exception=refused)
    http.post(MSG, status=201, payload=MESSAGE)
    assert (await client.send_message("6591234567", "english", {"body": "x"})).id
    assert len(_sent(http, "POST", MSG)) == 2


def _http_date(offset: float = 0.0) -> str:
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    return format_datetime(datetime.now(timezone.utc) + timedelta(seconds=offset), usegmt=True)


def _iso(offset: float) -> str:
    from datetime import datetime, timedelta, timezone

    return (datetime.now(timezone.utc) + timedelta(seconds=offset)).isoformat()


async def test_timed_out_retry_is_reconciled_by_one_get(
    client: pa.PostmanClient, http: aioresponses
) -> None:
    http.post(f"{MSG}/message_1/retry", exception=asyncio.TimeoutError())
    took = {
        **MESSAGE,
        "latestStatus": "enqueued",
        "attempts": [
            {"status": "enqueued", "createdAt": _iso(3)},
            {"status": "failure", "createdAt": _iso(-600)},
        ],
    }
    http.get(f"{MSG}/message_1", payload=took, headers={"Date": _http_date()})
    m = await client.retry_message("message_1")
    assert m.latest_status is pa.MessageStatus.ENQUEUED
    assert len(_sent(http, "POST", f"{MSG}/message_1/retry")) == 1
    assert len(_sent(http, "GET", f"{MSG}/message_1")) == 1


async def test_reconcile_with_known_attempt_count(
    client: pa.PostmanClient, http: aioresponses
) -> None:
    http.post(f"{MSG}/message_1/retry", exception=aiohttp.ServerDisconnectedError())
    http.get(f"{MSG}/message_1", payload={**MESSAGE, "numAttempts": 2})
    assert (await client.retry_message("message_1", attempts_before=1)).id == "message_1"
    http.post(f"{MSG}/message_1/retry", exception=aiohttp.ServerDisconnectedError())
    settled = {**MESSAGE, "latestStatus": "success", "numAttempts": 2}
    http.get(f"{MSG}/message_1", payload=settled, repeat=True)
    with pytest.raises(pa.OutcomeUnknownError) as info:
        await client.retry_message("message_1", attempts_before=2)
    assert info.value.applied is False
    # "Not applied" is read again after the re-check wait (the POST may have been late).
    assert len(_sent(http, "GET", f"{MSG}/message_1")) == 3


async def test_rejected_retry_whose_answer_was_lost_is_not_reported_applied(
    client: pa.PostmanClient, http: aioresponses
) -> None:
    # Processed and rejected (the message had succeeded), then the connection dropped: the
    # read-back shows no attempt after the POST, so it did not take - not "no longer failure".
    http.post(f"{MSG}/message_1/retry", exception=aiohttp.ServerDisconnectedError())
    done = {
        **MESSAGE,
        "latestStatus": "success",
        "attempts": [{"status": "success", "createdAt": _iso(-300)}],
    }
    http.get(f"{MSG}/message_1", payload=done, headers={"Date": _http_date()}, repeat=True)
    with pytest.raises(pa.OutcomeUnknownError) as info:
        await client.retry_message("message_1")
    assert info.value.applied is False
    assert info.value.observed.latest_status is pa.MessageStatus.SUCCESS


async def test_retry_still_failed_after_reset_is_not_resent(
    client: pa.PostmanClient, http: aioresponses
) -> None:
    http.post(f"{MSG}/message_1/retry", exception=aiohttp.ServerDisconnectedError())
    http.get(f"{MSG}/message_1", payload={**MESSAGE, "latestStatus": "failure"})
    with pytest.raises(pa.OutcomeUnknownError) as info:
        await client.retry_message("message_1")
    assert info.value.observed is not None
    assert info.value.observed.latest_status is pa.MessageStatus.FAILURE
    assert info.value.applied is None  # no attempts and no Date: cannot tell
    assert len(_sent(http, "POST", f"{MSG}/message_1/retry")) == 1


async def test_unreadable_2xx_retry_is_applied_and_read_back(
    client: pa.PostmanClient, http: aioresponses
) -> None:
    http.post(f"{MSG}/message_1/retry", status=201, body=b'{"id": "mess')
    http.get(f"{MSG}/message_1", payload={**MESSAGE, "latestStatus": "created"})
    assert (await client.retry_message("message_1")).id == "message_1"
    http.post(MSG, status=201, body=b"{oops")
    with pytest.raises(pa.OutcomeUnknownError) as info:
        await client.send_message("6591234567", "english", {"body": "x"})
    assert info.value.applied is True and len(_sent(http, "POST", MSG)) == 1


async def test_malformed_get_body_is_read_again(
    client: pa.PostmanClient, http: aioresponses
) -> None:
    url = f"{MSG}/message_1"
    http.get(url, status=200, body=b'{"id": "mess')
    http.get(url, status=200, payload=MESSAGE)
    assert (await client.get_message("message_1")).id == "message_1"
    http.get(url, status=200, body=b"[1, 2", repeat=True)
    with pytest.raises(pa.MalformedResponseError):
        await client.get_message("message_1")
    assert len(_sent(http, "GET", url)) == 2 + 4  # 1 + max_retries for the second call


async def test_oversized_body_refused(sleeps: Sleeps, http: aioresponses) -> None:
    http.get(f"{MSG}/message_1", status=200, body=b"x" * 5000)
    async with pa.PostmanClient(
        api_key=KEY,
        campaign_id=CID,
        max_response_bytes=1000,
        limiter=RateLimiter(1000, sleep=sleeps),
    ) as c:
        with pytest.raises(pa.MalformedResponseError, match="refused"):
            await c.get_message("message_1")


async def test_retry_budget_stops_an_outage(http: aioresponses, sleeps: Sleeps) -> None:
    url = f"{MSG}/message_1"
    http.get(url, status=500, repeat=True)
    async with pa.PostmanClient(
        api_key=KEY,
        campaign_id=CID,
        max_retries=50,
        sleep=sleeps,
        limiter=RateLimiter(1000, sleep=sleeps),
    ) as c:
        with pytest.raises(pa.RetryBudgetExhaustedError):
            await c.get_message("message_1")
        calls = len(_sent(http, "GET", url))
        assert calls == 21  # a budget of 100 at 5 per retry, not 51
        with pytest.raises(pa.RetryBudgetExhaustedError):
            await c.get_message("message_1")  # still empty: no retry storm
        assert len(_sent(http, "GET", url)) == calls + 1


async def test_bad_input_never_reaches_the_network(
    client: pa.PostmanClient, http: aioresponses
) -> None:
    bad_calls = [
        client.send_message("91234567", "english", {"body": "x"}),
        client.send_message("6591234567", "klingon", {"body": "x"}),
        client.send_message("6591234567", "english", {"body": ""}),
        client.send_message("6591234567", "english", ["body"]),  # type: ignore[arg-type]
        client.get_message("message_1/../../x"),
        client.retry_message(" message_1"),
        client.retry_batch("b\r\n1"),
        client.send_batch([]),
    ]
    for call in bad_calls:
        with pytest.raises(pa.ValidationError):
            await call
    with pytest.raises(pa.ValidationError):
        client.list_messages(page_size=0)
    with pytest.raises(pa.ValidationError):
        client.list_batch_messages("", page_size=10)
    assert http.requests == {}


async def test_constructor_validation() -> None:
    with pytest.raises(pa.ValidationError):
        pa.PostmanClient(api_key="", campaign_id=CID)
    with pytest.raises(pa.ValidationError):
        pa.PostmanClient(api_key=KEY, campaign_id="a/b")
    with pytest.raises(pa.ValidationError):
        pa.PostmanClient(api_key=KEY, campaign_id=CID, base_url="http://postman.gov.sg/api/v2")
    with pytest.raises(pa.ValidationError):
        pa.PostmanClient(api_key=KEY, campaign_id=CID, rate_limit=0)


async def test_environment_from_key_prefix() -> None:
    assert pa.PostmanClient(api_key="key_test_x", campaign_id=CID).base_url == pa.TEST_URL
    assert pa.PostmanClient(api_key="key_live_x", campaign_id=CID).base_url == pa.PRODUCTION_URL
    custom = pa.PostmanClient(
        api_key="key_test_x", campaign_id=CID, base_url="http://127.0.0.1:9/api/v2"
    )
    assert custom.base_url == "http://127.0.0.1:9/api/v2"


async def test_key_never_in_repr_or_logs(
    client: pa.PostmanClient, http: aioresponses, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="postman_async")
    http.get(f"{MSG}/message_1", status=500)
    http.get(f"{MSG}/message_1", payload=MESSAGE)
    await client.get_message("message_1")
    assert KEY not in repr(client)
    assert "GET" in caplog.text and "500" in caplog.text
    assert KEY not in caplog.text and "S3CRET" not in caplog.text


async def test_user_session_is_used_and_not_closed(http: aioresponses, sleeps: Sleeps) -> None:
    http.get(f"{MSG}/message_1", payload=MESSAGE)
    async with aiohttp.ClientSession() as session:
        async with pa.PostmanClient(
            api_key=KEY, campaign_id=CID, session=session, limiter=RateLimiter(1000, sleep=sleeps)
        ) as c:
            await c.get_message("message_1")
        assert not session.closed


async def test_closed_client_refuses_calls(client: pa.PostmanClient) -> None:
    await client.aclose()
    with pytest.raises(pa.PostmanError, match="closed"):
        await client.get_message("message_1")


@pytest.mark.parametrize(
    "body", [b"", b"OK", b"<html>Created</html>", b'{"status": "queued"}', b"\x00\xff"]
)
async def test_batch_retry_2xx_with_any_body_means_fired(
    client: pa.PostmanClient, http: aioresponses, body: bytes
) -> None:
    http.post(f"{BASE}/campaigns/{CID}/batch/b1/retry", status=201, body=body)
    assert await client.retry_batch("b1") is None
    assert len(_sent(http, "POST", f"{BASE}/campaigns/{CID}/batch/b1/retry")) == 1


async def test_lost_retry_answer_left_failure_is_retried_confirmed_by_read_back(
    client: pa.PostmanClient, http: aioresponses
) -> None:
    """No attempt counts in the read (a send-shaped payload), but the message left failure
    after our POST: only a retry moves it on, so the retry took."""
    from postman_async._executor import Executor
    from postman_async._fanout import retry_each
    from postman_async.reports import MessageState, RetryReport
    from postman_async.rules import AttemptCap

    http.post(f"{MSG}/message_1/retry", exception=aiohttp.ServerDisconnectedError())
    http.get(f"{MSG}/message_1", payload={**MESSAGE, "latestStatus": "enqueued"})
    executor = Executor(
        client=client,
        cap=AttemptCap(),
        priority=pa.Priority.BULK,
        concurrency=1,
        keep_messages=False,
        diagnose_skips=True,
        not_worth=frozenset(),
        poll_interval=1.0,
        max_poll_interval=1.0,
        telco_final_after=0.0,
        clock=lambda: 0.0,
        sleep=asyncio.sleep,
    )
    known = {"message_1": MessageState("message_1", pa.MessageStatus.FAILURE, None)}
    report = await retry_each(executor, ["message_1"], RetryReport(), known=known)
    result = report["message_1"]
    assert result.outcome is pa.Outcome.RETRIED
    assert result.detail == "status enqueued (answer lost; confirmed by read-back)"
    assert len(_sent(http, "POST", f"{MSG}/message_1/retry")) == 1  # never re-POSTed


async def test_meters_count_a_views_calls_and_nest_by_identity() -> None:
    from postman_async.policy import CallMeter, CallOptions

    outer, inner = CallMeter(), CallMeter()
    merged = CallOptions(meters=(outer,)).merged(CallOptions(meters=(inner, outer)))
    assert merged.meters == (outer, inner)  # both, once each, though their counts are equal
    assert outer is not inner and outer != inner


@pytest.mark.parametrize(
    ("method", "error", "dropped", "retry_429", "expected"),
    [
        ("POST", pa.TooManyRequestsError(429), True, True, True),  # certainly dropped
        ("POST", pa.PostmanConnectionError("refused"), True, True, True),  # never written
        ("POST", pa.PostmanTimeoutError("timeout"), False, True, False),  # maybe applied
        ("POST", pa.PostmanConnectionError("reset"), False, True, False),
        ("POST", pa.ServerError(503), False, True, False),
        ("POST", pa.MalformedResponseError("bad 201"), False, True, False),
        ("GET", pa.PostmanTimeoutError("timeout"), False, True, True),  # changes nothing
        ("GET", pa.ServerError(503), False, True, True),
        ("GET", pa.NotFoundError(404), False, True, False),
        ("GET", pa.TooManyRequestsError(429), True, False, False),  # the policy says no
        ("POST", pa.TooManyRequestsError(429), True, False, False),
    ],
)
def test_the_resend_rule(
    method: str, error: pa.PostmanError, dropped: bool, retry_429: bool, expected: bool
) -> None:
    from postman_async._session import may_resend
    from postman_async.protocol import Request

    request = Request(method, "/campaigns/c/messages")
    policy = pa.RetryPolicy(retry_on_429=retry_429)
    assert may_resend(request, error, dropped, policy) is expected


def test_a_views_hooks_replace_those_of_the_view_it_was_made_from() -> None:
    from postman_async.policy import CallOptions

    async def outer() -> None: ...

    async def inner() -> None: ...

    def gate() -> None: ...

    base = CallOptions(before_post=outer, post_gate=gate)
    assert base.merged(CallOptions(before_post=inner)).before_post is inner
    assert base.merged(CallOptions(before_post=inner)).post_gate is gate  # kept
    assert base.merged(CallOptions()).before_post is outer
