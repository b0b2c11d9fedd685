"""The pure core: builds the 7 endpoints' requests and deciphers answers. No I/O.

The session layer sends a :class:`Request` and hands the status, headers and body back to
:func:`decode_body` / :func:`error_from_response`; tests exercise both without a network.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import attrs

from .errors import (
    APIError,
    MalformedResponseError,
    TooManyRequestsError,
    ValidationError,
    error_class_for,
)
from .models import Message, MessageStatus
from .rules import retry_took
from .validation import (
    normalize_recipient,
    validate_cursor,
    validate_id,
    validate_language,
    validate_page_size,
    validate_search,
    validate_values,
)


@attrs.frozen
class Request:
    """One API call, before it is sent. ``path`` is relative to the base URL, already quoted."""

    method: str
    path: str
    params: tuple[tuple[str, str], ...] = ()
    json_body: Any = None
    csv_file: bytes | None = None
    filename: str = "messages.csv"

    @property
    def is_idempotent(self) -> bool:
        """GETs may be re-sent freely; send and retry POSTs have no idempotency key."""
        return self.method == "GET"


def _segment(kind: str, value: object) -> str:
    return quote(validate_id(kind, value), safe="")


def _campaign_path(campaign_id: str) -> str:
    return f"/campaigns/{_segment('campaign_id', campaign_id)}"


def send_message_request(
    campaign_id: str, recipient: object, language: object, values: object
) -> Request:
    body = {
        "recipient": normalize_recipient(recipient),
        "language": validate_language(language),
        "values": validate_values(values),
    }
    return Request("POST", f"{_campaign_path(campaign_id)}/messages", json_body=body)


def get_message_request(campaign_id: str, message_id: object) -> Request:
    return Request(
        "GET", f"{_campaign_path(campaign_id)}/messages/{_segment('message_id', message_id)}"
    )


def retry_message_request(campaign_id: str, message_id: object) -> Request:
    return Request(
        "POST",
        f"{_campaign_path(campaign_id)}/messages/{_segment('message_id', message_id)}/retry",
    )


def send_batch_request(campaign_id: str, csv_file: bytes, filename: str) -> Request:
    return Request(
        "POST",
        f"{_campaign_path(campaign_id)}/batch/messages",
        csv_file=csv_file,
        filename=filename,
    )


def retry_batch_request(campaign_id: str, batch_id: object) -> Request:
    return Request(
        "POST", f"{_campaign_path(campaign_id)}/batch/{_segment('batch_id', batch_id)}/retry"
    )


def _listing_params(
    limit: object, after: object, before: object, search: object
) -> tuple[tuple[str, str], ...]:
    params = [("limit", str(validate_page_size(limit)))]
    after_cursor = validate_cursor(after, "after")
    before_cursor = validate_cursor(before, "before")
    if after_cursor and before_cursor:
        raise ValidationError("cursor", "give either after or before, not both")
    if after_cursor:
        params.append(("after", after_cursor))
    if before_cursor:
        params.append(("before", before_cursor))
    term = validate_search(search)
    if term:
        params.append(("search", term))
    return tuple(params)


def list_batch_messages_request(
    campaign_id: str,
    batch_id: object,
    *,
    limit: object = 1000,
    after: object = None,
    before: object = None,
    search: object = None,
) -> Request:
    return Request(
        "GET",
        f"{_campaign_path(campaign_id)}/batch/{_segment('batch_id', batch_id)}/messages",
        params=_listing_params(limit, after, before, search),
    )


def list_messages_request(
    campaign_id: str,
    *,
    limit: object = 1000,
    after: object = None,
    before: object = None,
    search: object = None,
) -> Request:
    return Request(
        "GET",
        f"{_campaign_path(campaign_id)}/messages",
        params=_listing_params(limit, after, before, search),
    )


def retry_applied(
    message: Message,
    *,
    attempts_before: int | None,
    server_date: str | None,
    elapsed: float,
    status_before: MessageStatus | None = None,
    tolerance: float = 0.5,
) -> bool | None:
    """Did a retry POST whose answer was lost take? Decided from the message read back.

    First from what was known before the POST (:func:`rules.retry_took`: a new attempt, or a
    message that left ``failure``). Otherwise from time: a retry that took created an attempt
    after the POST was sent. The server's
    ``Date`` header (whole seconds) minus ``elapsed`` (seconds from sending the POST to
    receiving the read) places the POST on the server's clock; an attempt clearly after that
    took, one clearly before did not, anything within the Date header's resolution (plus
    ``tolerance``) is unknown (``None``).
    """
    took = retry_took(
        status_before=status_before,
        attempts_before=attempts_before,
        status_after=message.latest_status,
        attempts_after=message.attempt_count,
    )
    if took is not None:
        return took
    newest = message.latest_attempt
    if newest is None or newest.created_at is None or not server_date:
        return None
    try:
        date = parsedate_to_datetime(server_date)
    except (TypeError, ValueError, IndexError):
        return None
    if date.tzinfo is None:
        date = date.replace(tzinfo=timezone.utc)
    created = newest.created_at.timestamp()
    earliest_post = date.timestamp() - elapsed
    if created >= earliest_post + 1.0 + tolerance:
        return True
    if created < earliest_post - tolerance:
        return False
    return None


def decode_body(body: bytes) -> Any:
    """Parse a JSON body; an empty body is ``None``."""
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise MalformedResponseError(f"response is not valid JSON ({len(body)} bytes)") from exc


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date."""
    millis = _header(headers, "retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(0.0, value)
    raw = _header(headers, "retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        for key, item in headers.items():
            if key.lower() == name:
                return item
    return value


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str | None = None,
    path: str | None = None,
    now: datetime | None = None,
) -> APIError:
    """The typed error for an error answer, from either body shape (or no JSON at all)."""
    code = message = type_ = error_id = None
    try:
        data = decode_body(body)
    except MalformedResponseError:
        data = None
        text = body[:200].decode("utf-8", "replace").strip()
        message = "".join(ch for ch in text if ch.isprintable()) or None
    if isinstance(data, dict):
        envelope = data.get("error")
        if isinstance(envelope, dict):
            code = _text(envelope.get("code"))
            message = _text(envelope.get("message"))
            type_ = _text(envelope.get("type"))
            error_id = _text(envelope.get("id"))
        else:
            message = _text(data.get("message")) or _text(envelope)
            code = _text(data.get("code"))
    cls = error_class_for(status, code)
    kwargs: dict[str, Any] = {"method": method, "path": path}
    if issubclass(cls, TooManyRequestsError):
        kwargs["retry_after"] = parse_retry_after(headers, now)
    return cls(status, code, message, type_, error_id, **kwargs)


def _text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)[:1000] or None
    return str(value)[:1000] or None
