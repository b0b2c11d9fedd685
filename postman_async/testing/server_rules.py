"""The server's retry rules, read on their own from the reference (``postman-v2-reference.md``).

This module is the simulator's reading of the docs and imports nothing from the SDK: the SDK
has its own reading (``postman_async.rules``), and the conformance tests run both against the
same cases, so a misreading on either side shows as a disagreement. Statuses are plain strings,
as on the wire. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable

# §3.3 message statuses; §3.2 and §6.5 batch statuses.
CREATED = "created"
ENQUEUED = "enqueued"
SENDING = "sending"
SENT = "sent"
SENT_TO_TELCO = "sent_to_telco"
SUCCESS = "success"
FAILURE = "failure"
BATCH_ENQUEUING = "messages_enqueuing"  # §6.5 ASSUMPTION: the in-progress state
BATCH_ENQUEUED = "messages_enqueued"
BATCH_ENQUEUING_FAILED = "messages_enqueuing_failed"

# §5 "if the message belongs to a batch, the batch status is messages_enqueued or
# messages_enqueuing_failed"; batch retry "only when the batch status is ...".
RETRYABLE_BATCH = (BATCH_ENQUEUED, BATCH_ENQUEUING_FAILED)

# §4.3 error codes.
OK = "ok"
NOT_IN_FAILURE = "message_not_found_or_retry_message_not_in_failure_status"
TOO_MANY_ATTEMPTS = "too_many_message_attempts_error"
BATCH_NOT_RETRYABLE = "batch_not_found_or_is_not_retryable"
UNRESOLVED = "unresolved_batch_messages"
NOTHING_TO_RETRY = "no_failed_batch_messages_to_retry"


def attempts_left(attempts: int, attempt_cap: int) -> bool:
    """§6.1: ``attempt_cap`` counts every attempt, the original send included. The docs say
    both "maximum number of attempts of 3" (cap 3) and "retried 3 times" (cap 4)."""
    return attempts < attempt_cap


def answer_message_retry(
    status: str | None,
    attempts: int,
    *,
    batch_status: str | None,
    attempt_cap: int,
) -> str:
    """The code a single retry answers (``OK``: 201). ``status`` None: no such message.

    §5: allowed only from ``failure`` and, for a batch message, while the batch is
    ``messages_enqueued``/``messages_enqueuing_failed``; §4.3: a missing message is the same
    400 as one not in failure; a message out of attempts gets ``too_many_message_attempts``.
    A blocked batch has no documented code of its own: the not-in-failure one is assumed.
    """
    if status != FAILURE:
        return NOT_IN_FAILURE
    if batch_status is not None and batch_status not in RETRYABLE_BATCH:
        return NOT_IN_FAILURE
    if not attempts_left(attempts, attempt_cap):
        return TOO_MANY_ATTEMPTS
    return OK


def answer_batch_retry(
    batch_status: str | None,
    messages: Iterable[tuple[str, int]],
    *,
    attempt_cap: int,
) -> str:
    """The code a batch retry answers, given each message's (status, attempts); ``batch_status``
    None: no such batch.

    §5 in its order: the batch status must allow it; any message still ``created`` fails it
    (and flips the batch to ``messages_enqueuing_failed``: the caller's job); it fails when
    every message succeeded or every failed one is out of attempts.
    """
    if batch_status not in RETRYABLE_BATCH:
        return BATCH_NOT_RETRYABLE
    retryable = False
    for status, attempts in messages:
        if status == CREATED:
            return UNRESOLVED
        if status == FAILURE and attempts_left(attempts, attempt_cap):
            retryable = True
    return OK if retryable else NOTHING_TO_RETRY


def is_foreign(recipient: str) -> bool:
    """§3.3 and §6.10: a number without the ``65`` country code is foreign."""
    return not recipient.startswith("65")
