from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

import postman_async as pa
from postman_async.protocol import (
    decode_body,
    error_from_response,
    get_message_request,
    list_batch_messages_request,
    list_messages_request,
    parse_retry_after,
    retry_batch_request,
    retry_message_request,
    send_batch_request,
    send_message_request,
)

CID = "campaign_abc"

DOCUMENTED = [
    (400, "parameter_invalid", pa.ParameterInvalidError),
    (400, "message_not_found_or_retry_message_not_in_failure_status", pa.MessageNotRetryableError),
    (400, "too_many_message_attempts_error", pa.TooManyAttemptsError),
    (400, "batch_not_found_or_is_not_retryable", pa.BatchNotRetryableError),
    (400, "unresolved_batch_messages", pa.UnresolvedBatchMessagesError),
    (400, "no_failed_batch_messages_to_retry", pa.NoFailedBatchMessagesError),
    (400, "invalid_ip_address_used", pa.IpNotAllowedError),
    (401, "invalid_ip_address_error", pa.IpNotAllowedError),
    (401, "invalid_api_key_provided", pa.InvalidApiKeyError),
    (401, "authentication_required", pa.AuthenticationError),
    (404, "invalid_path", pa.NotFoundError),
    (429, "too_many_requests", pa.TooManyRequestsError),
    (500, "internal_server_error", pa.ServerError),
]


@pytest.mark.parametrize(("status", "code", "cls"), DOCUMENTED)
def test_envelope_errors_map_to_classes(status: int, code: str, cls: type) -> None:
    body = json.dumps(
        {"error": {"code": code, "message": "Msg", "type": "domain_error", "id": "trace_1"}}
    ).encode()
    err = error_from_response(status, {}, body, method="POST", path="/x")
    assert type(err) is cls
    assert isinstance(err, pa.APIError) and isinstance(err, pa.PostmanError)
    assert (err.status, err.code, err.message, err.type, err.error_id) == (
        status,
        code,
        "Msg",
        "domain_error",
        "trace_1",
    )
    assert code in str(err) and "trace_1" in str(err)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, pa.BadRequestError),
        (401, pa.AuthenticationError),
        (403, pa.PermissionDeniedError),
        (404, pa.NotFoundError),
        (429, pa.TooManyRequestsError),
        (500, pa.ServerError),
        (502, pa.ServerError),
        (418, pa.APIError),
    ],
)
def test_bare_body_maps_by_status(status: int, cls: type) -> None:
    body = json.dumps({"message": "Unauthorized", "statusCode": status}).encode()
    err = error_from_response(status, {}, body)
    assert type(err) is cls
    assert err.message == "Unauthorized" and err.code is None


def test_non_json_error_body_is_still_typed() -> None:
    err = error_from_response(502, {}, b"<html>Bad Gateway</html>\x00")
    assert type(err) is pa.ServerError and err.message == "<html>Bad Gateway</html>"
    assert type(error_from_response(400, {}, b"")) is pa.BadRequestError
    assert type(error_from_response(400, {}, b'{"error": "text"}')) is pa.BadRequestError


def test_429_carries_retry_after() -> None:
    body = b'{"error":{"code":"too_many_requests","message":"Too many requests"}}'
    err = error_from_response(429, {"Retry-After": "2"}, body)
    assert isinstance(err, pa.TooManyRequestsError) and err.retry_after == 2.0
    assert error_from_response(429, {}, body).retry_after is None


def test_retry_after_forms() -> None:
    now = datetime(2026, 11, 22, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"Retry-After": "Sun, 22 Nov 2026 12:00:07 GMT"}, now) == 7.0
    assert parse_retry_after({"Retry-After": "Sun, 22 Nov 2026 11:00:00 GMT"}, now) == 0.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": "-5"}) == 0.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({"Retry-After": "nan"}) is None
    assert parse_retry_after({}) is None


def test_requests_for_every_endpoint() -> None:
    send = send_message_request(CID, "+65 9123 4567", "English", {"body": "Hi"})
    assert (send.method, send.path) == ("POST", f"/campaigns/{CID}/messages")
    assert send.json_body == {
        "recipient": "6591234567",
        "language": "english",
        "values": {"body": "Hi"},
    }
    assert not send.is_idempotent
    get = get_message_request(CID, "message_1")
    assert (get.method, get.path, get.is_idempotent) == (
        "GET",
        f"/campaigns/{CID}/messages/message_1",
        True,
    )
    assert retry_message_request(CID, "message_1").path == (
        f"/campaigns/{CID}/messages/message_1/retry"
    )
    batch = send_batch_request(CID, b"csv", "x.csv")
    assert (batch.path, batch.csv_file) == (f"/campaigns/{CID}/batch/messages", b"csv")
    assert retry_batch_request(CID, "b1").path == f"/campaigns/{CID}/batch/b1/retry"
    listing = list_batch_messages_request(CID, "b1", limit=1000, after="YWJj", search="9123")
    assert listing.path == f"/campaigns/{CID}/batch/b1/messages"
    assert listing.params == (("limit", "1000"), ("after", "YWJj"), ("search", "9123"))
    assert list_messages_request(CID, limit=5, before="YWJj").params == (
        ("limit", "5"),
        ("before", "YWJj"),
    )
    with pytest.raises(pa.ValidationError):
        list_messages_request(CID, after="YWJj", before="YWJj")


def test_bad_input_never_builds_a_request() -> None:
    with pytest.raises(pa.ValidationError):
        get_message_request(CID, "../../admin")
    with pytest.raises(pa.ValidationError):
        retry_batch_request("campaign/x", "b1")
    with pytest.raises(pa.ValidationError):
        send_message_request(CID, "6591234567", "english", {"body": ""})


def test_decode_body() -> None:
    assert decode_body(b"") is None
    assert decode_body(b'{"a": 1}') == {"a": 1}
    with pytest.raises(pa.MalformedResponseError):
        decode_body(b'{"a": ')
    with pytest.raises(pa.MalformedResponseError):
        decode_body(b"[" * 100000)


def test_retry_applied_rules() -> None:
    from postman_async.converter import decode
    from postman_async.protocol import retry_applied

    def message(created: str, count: int | None = None) -> pa.Message:
        payload: dict[str, object] = {
            "id": "m",
            "attempts": [{"status": "created", "createdAt": created}],
        }
        if count is not None:
            payload["numAttempts"] = count
        return decode(pa.Message, payload)

    date = "Sun, 22 Nov 2026 12:00:10 GMT"  # server time of the read-back
    # POST sent 2 s before the read: on the server clock, in [12:00:08, 12:00:09).
    after = message("2026-11-22T20:00:09.800+08:00")
    before = message("2026-11-22T20:00:05.000+08:00")
    unsure = message("2026-11-22T20:00:08.500+08:00")
    assert retry_applied(after, attempts_before=None, server_date=date, elapsed=2.0) is True
    assert retry_applied(before, attempts_before=None, server_date=date, elapsed=2.0) is False
    assert retry_applied(unsure, attempts_before=None, server_date=date, elapsed=2.0) is None
    assert retry_applied(after, attempts_before=None, server_date=None, elapsed=2.0) is None
    assert (
        retry_applied(
            message("2026-01-01T00:00:00Z", 3), attempts_before=2, server_date=None, elapsed=0
        )
        is True
    )
    assert (
        retry_applied(
            message("2026-01-01T00:00:00Z", 2), attempts_before=2, server_date=None, elapsed=0
        )
        is False
    )
