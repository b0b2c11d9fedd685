"""Decoding the payload shapes the reference and seed pages show."""

from __future__ import annotations

from datetime import timedelta

import pytest

import postman_async as pa
from postman_async import rules
from postman_async.converter import decode, encode

RETRY_EXAMPLE = {  # seed page "POST - Retry single send"
    "createdAt": "2024-05-16T16:48:42.247+08:00",
    "updatedAt": "2024-05-16T16:48:59.157+08:00",
    "id": "message_0b7e6a3c-1111-4222-8333-444455556666",
    "recipient": "6522222222",
    "values": {"name": "Emily Yeo"},
    "fullMessage": "Open Government Products\n\n---\n\nDear Emily Yeo\n\n---\n\nFooter",
    "latestStatus": "created",
    "templateBodyId": "tb_1",
    "campaignId": "campaign_1",
    "creatorId": "user_1",
}

GET_EXAMPLE = {
    **RETRY_EXAMPLE,
    "latestStatus": "success",
    "language": "english",
    "creatorEmail": "campaign_1@postman.gov.sg",
    "templateBody": {
        "createdAt": "2024-05-16T10:30:50.904+08:00",
        "updatedAt": "2024-05-16T10:30:50.904+08:00",
        "id": "tb_1",
        "templateId": "t_1",
        "language": "english",
        "body": "Dear {{name}}",
        "creatorId": "user_1",
    },
    "batches": [],
    "attempts": [
        {"status": "success", "createdAt": "2024-05-16T16:48:59.157+08:00"},
        {
            "status": "failure",
            "createdAt": "2024-05-16T16:48:42.247+08:00",
            "sentAt": "2024-05-16T16:48:43.000+08:00",
            "deliveredAt": None,
            "error": {"type": "server_error", "code": "server_unknown_error"},
        },
    ],
}

BATCH_ITEM = {
    **RETRY_EXAMPLE,
    "latestStatus": "failure",
    "numAttempts": 2,
    "messageAttempts": [
        {
            "id": "a1",
            "messageId": RETRY_EXAMPLE["id"],
            "status": "failure",
            "errorType": "delivery_error",
            "errorCode": "recipient_unavailable",
            "sentAt": None,
            "deliveredAt": None,
            "createdAt": "2024-05-16T16:00:00.000+08:00",
            "updatedAt": "2024-05-16T16:00:05.000+08:00",
            "externalAttemptId": "",
            "metadata": {},
            "creatorId": "user_1",
            "creator": {"email": "x@postman.gov.sg"},
        },
        {
            "id": "a2",
            "messageId": RETRY_EXAMPLE["id"],
            "status": "failure",
            "errorType": "delivery_error",
            "errorCode": "routing_error",
            "createdAt": "2024-05-16T17:00:00.000+08:00",
        },
    ],
}

CAMPAIGN_ITEM = {  # Feb 2024 example: a batch with the older "success" status
    **RETRY_EXAMPLE,
    "batchId": "685",
    "batches": [
        {
            "createdAt": "2024-02-27T16:12:52.710+08:00",
            "updatedAt": "2024-02-27T16:12:52.710+08:00",
            "id": "685",
            "originalFileName": "list.csv",
            "status": "success",
            "campaignId": "campaign_1",
            "creatorId": "user_1",
            "totalMessages": 3,
            "BatchMessage": {
                "createdAt": "2024-02-27T16:12:52.710+08:00",
                "updatedAt": "2024-02-27T16:12:52.710+08:00",
                "id": "9",
                "batchId": "685",
                "messageId": RETRY_EXAMPLE["id"],
            },
        }
    ],
}


def test_retry_example() -> None:
    m = decode(pa.Message, RETRY_EXAMPLE)
    assert m.latest_status is pa.MessageStatus.CREATED
    assert m.created_at is not None and m.created_at.utcoffset() == timedelta(hours=8)
    assert m.created_at.microsecond == 247000
    assert m.values == {"name": "Emily Yeo"} and m.attempts is None and m.template_body is None


def test_get_example_nested_attempt_errors() -> None:
    m = decode(pa.Message, GET_EXAMPLE)
    assert m.attempt_count == 2
    assert m.attempts is not None
    assert m.attempts[1].error_type == "server_error"
    assert m.attempts[1].error_code == "server_unknown_error"
    assert m.attempts[1].delivered_at is None
    assert m.latest_attempt is m.attempts[0]
    assert m.template_body is not None and m.template_body.body == "Dear {{name}}"
    assert m.batches == () and m.batch is None


def test_batch_listing_flat_attempts() -> None:
    m = decode(pa.Message, BATCH_ITEM)
    assert m.num_attempts == 2 and m.attempt_count == 2
    assert m.message_attempts is not None
    assert m.message_attempts[0].error_code == "recipient_unavailable"
    assert m.latest_error_code == "routing_error"  # newest by createdAt, whatever the order


def test_campaign_listing_batches() -> None:
    m = decode(pa.Message, CAMPAIGN_ITEM)
    assert m.batch is not None and m.batch.status is pa.BatchStatus.SUCCESS
    assert m.batch.batch_message is not None and m.batch.batch_message.batch_id == "685"
    assert m.batch_ids == ("685",) and m.batch.total_messages == 3


def test_page_and_batch_result() -> None:
    page = decode(
        pa.Page,
        {
            "data": [RETRY_EXAMPLE],
            "pageData": {
                "hasNextPage": True,
                "hasPreviousPage": False,
                "startCursor": "s",
                "endCursor": "e",
            },
        },
    )
    assert page.next_cursor == "e" and len(page.data) == 1
    empty = decode(
        pa.Page,
        {
            "data": [],
            "pageData": {
                "hasNextPage": False,
                "hasPreviousPage": False,
                "startCursor": None,
                "endCursor": None,
            },
        },
    )
    assert empty.next_cursor is None
    assert decode(pa.BatchSendResult, {"isValid": True, "batchId": "b1"}).batch_id == "b1"


def test_unknown_fields_and_enum_values_are_not_fatal() -> None:
    m = decode(pa.Message, {**RETRY_EXAMPLE, "latestStatus": "paused", "brandNew": {"x": 1}})
    assert m.latest_status == "paused" and m.latest_status is not None
    assert not m.latest_status.is_known
    assert encode(m)["latestStatus"] == "paused"
    b = decode(pa.Batch, {"id": "b", "status": "archived"})
    assert (
        b.status is not None
        and b.status.value == "archived"
        and rules.batch_allows_retry(b.status) is None
    )


def test_timestamps_with_z_and_without_offset() -> None:
    z = decode(pa.Message, {"id": "m", "createdAt": "2025-01-01T00:00:00Z"})
    assert z.created_at is not None and z.created_at.utcoffset() == timedelta(0)
    naive = decode(pa.Message, {"id": "m", "createdAt": "2025-01-01T08:00:00"})
    assert naive.created_at is not None and naive.created_at.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize(
    "payload",
    [
        {"latestStatus": "created"},  # no id
        {"id": ["x"]},
        {"id": "m", "createdAt": "yesterday"},
        {"id": "m", "createdAt": 17},
        {"id": "m", "numAttempts": "2"},
        {"id": "m", "numAttempts": True},
        {"id": "m", "values": ["a"]},
        {"id": "m", "attempts": {"status": "failure"}},
        {"id": "m", "latestStatus": 3},
    ],
)
def test_wrong_shapes_are_typed_errors(payload: dict[str, object]) -> None:
    with pytest.raises(pa.MalformedResponseError):
        decode(pa.Message, payload)


def test_non_object_is_typed_error() -> None:
    for data in (None, [], "x", 1):
        with pytest.raises(pa.MalformedResponseError):
            decode(pa.Message, data)
    with pytest.raises(pa.MalformedResponseError):
        decode(pa.BatchSendResult, {"isValid": "false", "batchId": "b"})
