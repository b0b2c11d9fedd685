"""Fuzzing with hypothesis: hostile or garbled input only ever yields typed errors.

Never KeyError, TypeError, AttributeError or anything else untyped: decoding raises
MalformedResponseError, with no such error hidden behind it (its ``__cause__`` is checked),
both for random JSON and for valid payloads with one field mutated; error decoding always
returns an APIError, validators raise ValidationError (and what they accept is safe), and
pagination visits every item once.
"""

from __future__ import annotations

import contextlib
import json
import string
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import postman_async as pa
from postman_async.converter import decode
from postman_async.protocol import decode_body, error_from_response, parse_retry_after
from postman_async.testing.pagination import (
    CursorError,
    decode_cursor,
    encode_cursor,
    paginate,
)
from postman_async.validation import (
    normalize_recipient,
    rows_to_csv,
    validate_api_key,
    validate_base_url,
    validate_csv,
    validate_cursor,
    validate_id,
    validate_language,
    validate_search,
    validate_values,
)

if sys.version_info < (3, 11):  # pragma: no cover - the backport cattrs uses on 3.10
    from exceptiongroup import BaseExceptionGroup

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
MESSAGE_KEYS = [
    "id",
    "recipient",
    "values",
    "language",
    "fullMessage",
    "latestStatus",
    "createdAt",
    "updatedAt",
    "templateBody",
    "batches",
    "batchId",
    "attempts",
    "messageAttempts",
    "numAttempts",
    "error",
    "creatorId",
]
message_like = st.dictionaries(st.sampled_from(MESSAGE_KEYS), json_values, max_size=10)
timestamps = st.text(max_size=40) | st.sampled_from(
    ["2024-05-16T10:30:50.904+08:00", "2024-13-01T00:00:00Z", "", "Z", "2024-05-16T25:00"]
)


FORBIDDEN = (KeyError, TypeError, AttributeError, IndexError)


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _decode_typed(model: type, data: Any) -> Any:
    """Decode; a failure must be a MalformedResponseError with nothing untyped behind it."""
    try:
        return decode(model, data)
    except pa.MalformedResponseError as exc:
        cause = exc.__cause__
        hidden = [e for e in (_leaves(cause) if cause else []) if isinstance(e, FORBIDDEN)]
        assert not hidden, f"{hidden!r} hides behind {exc}"
        return None


#: Valid payloads of each shape (reference §2), to mutate one field at a time.
VALID = {
    pa.Message: {
        "id": "message_1",
        "recipient": "6591234567",
        "values": {"body": "hi"},
        "latestStatus": "failure",
        "createdAt": "2024-05-16T10:30:50.904+08:00",
        "numAttempts": 2,
        "templateBody": {"id": "tb_1", "language": "english", "body": "{{body}}"},
        "batches": [
            {
                "id": "batch_1",
                "status": "messages_enqueued",
                "totalMessages": 3,
                "BatchMessage": {"id": "685", "batchId": "batch_1", "messageId": "message_1"},
            }
        ],
        "attempts": [
            {
                "status": "failure",
                "createdAt": "2024-05-16T10:30:50.904+08:00",
                "deliveredAt": None,
                "error": {"type": "delivery_error", "code": "recipient_unavailable"},
            }
        ],
        "messageAttempts": [{"id": "a1", "messageId": "message_1", "status": "failure"}],
    },
    pa.Page: {
        "data": [{"id": "message_1", "latestStatus": "success"}],
        "pageData": {"hasNextPage": True, "endCursor": "WyJhIiwiYiJd"},
    },
    pa.BatchSendResult: {"isValid": True, "batchId": "batch_1"},
}


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    paths = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            paths += _paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value):
            paths += _paths(inner, (*prefix, index))
    return paths


def _mutated(payload: Any, path: tuple[Any, ...], replacement: Any, delete: bool) -> Any:
    copy = json.loads(json.dumps(payload))
    parent = copy
    for step in path[:-1]:
        parent = parent[step]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return copy


@settings(max_examples=400)
@given(data=st.data(), replacement=json_values, delete=st.booleans())
def test_one_field_of_a_valid_payload_mutated_is_typed(
    data: st.DataObject, replacement: Any, delete: bool
) -> None:
    model = data.draw(st.sampled_from(list(VALID)))
    payload = VALID[model]
    path = data.draw(st.sampled_from(_paths(payload)))
    _decode_typed(model, _mutated(payload, path, replacement, delete))


@settings(max_examples=300)
@given(
    data=json_values | message_like,
    model=st.sampled_from([pa.Message, pa.Page, pa.BatchSendResult, pa.MessageAttempt, pa.Batch]),
)
def test_decoding_random_json_is_typed(data: Any, model: type) -> None:
    _decode_typed(model, data)


@settings(max_examples=200)
@given(stamp=timestamps, status=st.text(max_size=20))
def test_bad_timestamps_and_unknown_enums(stamp: str, status: str) -> None:
    try:
        message = decode(
            pa.Message,
            {
                "id": "m",
                "createdAt": stamp,
                "latestStatus": status,
                "attempts": [{"status": status, "createdAt": stamp}],
            },
        )
    except pa.MalformedResponseError:
        return
    assert message.latest_status == status  # unknown values are kept, not fatal
    assert message.created_at is not None and message.created_at.tzinfo is not None


@settings(max_examples=200)
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()))
def test_decode_body_random_bytes(body: bytes) -> None:
    """Exactly what ``json`` makes of the bytes (``None`` for a blank body), or, where
    ``json`` cannot parse them, MalformedResponseError with the parser's error as its cause."""
    try:
        expected = None if not body.strip() else json.loads(body)
    except (ValueError, RecursionError) as exc:
        with pytest.raises(pa.MalformedResponseError, match=rf"\({len(body)} bytes\)") as info:
            decode_body(body)
        assert type(info.value.__cause__) is type(exc)
    else:
        # Compared as JSON text: NaN is not equal to itself.
        assert json.dumps(decode_body(body)) == json.dumps(expected)


@given(cut=st.integers(min_value=1, max_value=200))
def test_truncated_and_huge_bodies(cut: int) -> None:
    page = json.dumps(
        {
            "data": [{"id": f"message_{i}", "latestStatus": "success"} for i in range(50)],
            "pageData": {},
        }
    ).encode()
    truncated = page[: len(page) - cut]
    # A JSON object cut anywhere before its last byte is never JSON: a typed error, caused
    # by the parser's.
    with pytest.raises(pa.MalformedResponseError) as info:
        decode_body(truncated)
    assert isinstance(info.value.__cause__, ValueError)
    deep = b"[" * 50_000 + b"]" * 50_000
    with pytest.raises(pa.MalformedResponseError) as info:
        decode_body(deep)
    assert isinstance(info.value.__cause__, RecursionError)


@settings(max_examples=300)
@given(
    status=st.integers(min_value=400, max_value=599),
    body=st.binary(max_size=200)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.builds(lambda e: json.dumps({"error": e}).encode(), json_values),
    retry_after=st.none() | st.text(max_size=30),
)
def test_error_decoding_always_typed(status: int, body: bytes, retry_after: str | None) -> None:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    error = error_from_response(status, headers, body)
    assert isinstance(error, pa.APIError) and error.status == status
    str(error)
    if isinstance(error, pa.TooManyRequestsError) and error.retry_after is not None:
        assert error.retry_after >= 0
    value = parse_retry_after(headers)
    assert value is None or value >= 0


text_inputs = (
    st.text()
    | st.binary().map(lambda b: b.decode("latin-1"))
    | st.none()
    | st.integers()
    | st.lists(st.text(max_size=3), max_size=2)
)


@settings(max_examples=300)
@given(value=text_inputs)
def test_validators_only_raise_validation_error(value: Any) -> None:
    for validator, check in [
        (lambda v: validate_id("message_id", v), lambda out: not set(out) & set("/?#% \t\r\n")),
        (normalize_recipient, lambda out: out.isdigit() and 8 <= len(out) <= 15),
        (validate_language, lambda out: out in ("english", "chinese", "malay", "tamil")),
        (validate_search, lambda out: out is None or ("\n" not in out and out.strip())),
        (validate_cursor, lambda out: out is None or "\n" not in out),
        (validate_api_key, lambda out: out.isprintable() and " " not in out),
        (validate_base_url, lambda out: out.scheme in ("http", "https")),
    ]:
        try:
            out = validator(value)
        except pa.ValidationError:
            continue
        assert check(out), (value, out)


@settings(max_examples=200)
@given(
    values=st.dictionaries(st.text(max_size=6) | st.integers(), text_inputs, max_size=4)
    | text_inputs
)
def test_values_validator(values: Any) -> None:
    try:
        out = validate_values(values)
    except pa.ValidationError:
        return
    assert all(isinstance(k, str) and k.strip() for k in out)
    assert all(isinstance(v, str) and v.strip() for v in out.values())


@settings(max_examples=150)
@given(
    rows=st.lists(
        st.dictionaries(
            st.sampled_from(["recipient", "language", "body", "x"]), text_inputs, max_size=4
        ),
        max_size=4,
    ),
    raw=st.binary(max_size=200),
)
def test_csv_builders_and_checker(rows: list[dict[str, Any]], raw: bytes) -> None:
    try:
        data = rows_to_csv(rows)
    except pa.ValidationError:
        pass
    else:
        assert validate_csv(data) == data  # what we build, we accept
    with contextlib.suppress(pa.ValidationError):
        validate_csv(raw)


@settings(max_examples=200)
@given(cursor=st.text(max_size=60) | st.text(alphabet=string.ascii_letters + "+/=", max_size=60))
def test_cursor_decoding_is_typed(cursor: str) -> None:
    try:
        created, message_id = decode_cursor(cursor)
    except CursorError:
        return
    assert isinstance(created, str) and isinstance(message_id, str)
    assert decode_cursor(encode_cursor((created, message_id))) == (created, message_id)


@settings(max_examples=200)
@given(
    n=st.integers(min_value=0, max_value=60),
    limit=st.integers(min_value=1, max_value=25),
    ties=st.booleans(),
)
def test_pagination_visits_every_item_once_newest_first(n: int, limit: int, ties: bool) -> None:
    keys = sorted(
        (f"2024-01-01T00:00:{(0 if ties else i) % 60:02d}.000+08:00", f"m{i:03d}") for i in range(n)
    )
    items = list(range(n))
    order = sorted(range(n), key=lambda i: keys[i], reverse=True)
    seen: list[int] = []
    after = None
    while True:
        page, data = paginate(keys, items, limit=limit, after=after)
        seen.extend(page)
        if not data["hasNextPage"]:
            break
        after = decode_cursor(data["endCursor"])
    assert seen == order
    if n:  # and back again with `before`
        last, _ = paginate(
            keys, items, limit=limit, after=decode_cursor(encode_cursor(keys[order[-1]]))
        )
        assert last == []
