"""A single retry whose answer was lost (timeout, reset after writing, 5xx, unreadable 2xx):
never re-sent; the message is read once, and :func:`readback.retry_verdict` decides (exact
from what was known before the POST, else by the createdAt rule).

Found applied: the message is returned. Otherwise :class:`OutcomeUnknownError` with
``observed`` (the message) and ``applied`` (``False``: it did not take; ``None``: cannot
tell), saying so when the read shows a count the server's cap refuses: such a retry will
never be applied, and the orchestrator records it as exhausted rather than offer it again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from . import readback
from .converter import decode
from .errors import MalformedResponseError, OutcomeUnknownError, PostmanError
from .models import Message, MessageStatus, Priority
from .protocol import decode_body, get_message_request, retry_message_request

if TYPE_CHECKING:
    from .client import PostmanClient

logger = logging.getLogger("postman_async")

Before = tuple[MessageStatus | None, int | None]


async def retry_message(
    client: PostmanClient, message_id: str, before: Before, priority: Priority | None
) -> tuple[Message, bool]:
    """The retried message, and whether it was confirmed by a read-back. ``before``: the
    status and attempt count last read, when known."""
    request = retry_message_request(client.campaign_id, message_id)
    session = client._session()
    try:
        raw = await client._send(request, priority)
    except OutcomeUnknownError as exc:
        return await reconcile(client, message_id, exc, before, priority), True
    try:
        return decode(Message, decode_body(raw.body)), False
    except MalformedResponseError as exc:
        # HTTP 2xx: the retry took; read the message for the caller.
        unknown = OutcomeUnknownError(
            f"retry of {message_id} answered HTTP {raw.status} with an unreadable body",
            cause=exc,
            applied=True,
            sent_at=session.now(),
        )
        return await reconcile(client, message_id, unknown, before, priority), True


async def reconcile(
    client: PostmanClient,
    message_id: str,
    exc: OutcomeUnknownError,
    before: Before,
    priority: Priority | None,
) -> Message:
    """Reads of the message decide the lost retry (see the module docstring). A read that
    says "not applied" is taken again after each of the client's ``readback_waits``: the
    POST may still have been on its way (a timeout), and the server may process it late."""
    state = client._readback
    message, applied = await _read_and_decide(client, message_id, exc, before, priority)
    judged = applied is False and exc.applied is None  # by the read, not known beforehand
    for wait in state.waits if judged else ():
        await state.sleep(wait)
        message, applied = await _read_and_decide(client, message_id, exc, before, priority)
        if applied is not False:
            break
    if applied:
        logger.info("retry of %s confirmed by reading it back", message_id)
        return message
    raise OutcomeUnknownError(
        f"retry of {message_id} {_not_taken(client, message, applied)} ({exc.cause}); read "
        f"back: status {message.latest_status}; it was not re-sent",
        cause=exc.cause,
        observed=message,
        applied=applied,
    ) from exc


async def _read_and_decide(
    client: PostmanClient,
    message_id: str,
    exc: OutcomeUnknownError,
    before: Before,
    priority: Priority | None,
) -> tuple[Message, bool | None]:
    """One read of the message, and whether the lost retry took (``None``: cannot tell)."""
    session = client._session()
    try:
        raw = await client._send(
            get_message_request(client.campaign_id, message_id),
            priority,
            lambda body: decode(Message, decode_body(body)),
        )
        message: Message = raw.value
    except PostmanError as read_error:
        raise OutcomeUnknownError(
            f"retry of {message_id}: outcome unknown ({exc.cause}); "
            f"reading it back failed too ({read_error})",
            cause=exc.cause,
            applied=exc.applied,
        ) from read_error
    if exc.applied is not None:
        return message, exc.applied
    elapsed = session.now() - exc.sent_at if exc.sent_at is not None else 0.0
    verdict = readback.retry_verdict(
        message,
        status_before=before[0],
        attempts_before=before[1],
        server_date=raw.headers.get("Date"),
        elapsed=elapsed,
    )
    if isinstance(verdict, readback.Ambiguous):
        return message, None
    return message, isinstance(verdict, readback.Applied)


def _not_taken(client: PostmanClient, message: Message, applied: bool | None) -> str:
    if applied is None:
        return "may or may not have been applied"
    count = message.attempt_count
    failed = message.latest_status == MessageStatus.FAILURE
    if failed and count is not None and client.attempt_cap.refuses(count):
        return (
            f"was not applied: it has {count} attempts, and {client.attempt_cap.describe()}, "
            "so it will never be"
        )
    return "was not applied"
