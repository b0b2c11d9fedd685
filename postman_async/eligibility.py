"""Retry eligibility, as the seed pages state it, in one table each. Pure: no I/O.

The orchestrator uses these to predict what a retry POST will answer (and so not spend a call
that cannot succeed); the simulator uses the same rules to answer. Each verdict maps to the
documented error code the server returns for it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from .models import BatchStatus, MessageStatus

DEFAULT_MAX_ATTEMPTS = 3
RETRYABLE_BATCH_STATUSES = frozenset(
    {BatchStatus.MESSAGES_ENQUEUED, BatchStatus.MESSAGES_ENQUEUING_FAILED}
)
#: Delivery errors that a retry will not fix (``content_invalid``: newer docs say No).
NOT_WORTH_RETRYING = frozenset({"recipient_invalid", "content_invalid"})


class MessageVerdict(enum.Enum):
    RETRYABLE = "retryable"
    NOT_IN_FAILURE = "message_not_found_or_retry_message_not_in_failure_status"
    EXHAUSTED = "too_many_message_attempts_error"
    BATCH_BLOCKED = "batch_status_blocks_retry"


class BatchVerdict(enum.Enum):
    RETRYABLE = "retryable"
    NOT_RETRYABLE = "batch_not_found_or_is_not_retryable"
    UNRESOLVED = "unresolved_batch_messages"
    NOTHING_TO_RETRY = "no_failed_batch_messages_to_retry"


def has_attempts_left(attempts: int, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> bool:
    """``attempts`` counts the original send (ASSUMPTION in the reference, §6.1)."""
    return attempts < max_attempts


def message_retry_verdict(
    status: MessageStatus | None,
    attempts: int,
    *,
    batch_status: BatchStatus | None = None,
    in_batch: bool = False,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> MessageVerdict:
    """Single retry: only from ``failure``; a batch message only while its batch's status is
    ``messages_enqueued`` or ``messages_enqueuing_failed``; only with attempts left."""
    if status != MessageStatus.FAILURE:
        return MessageVerdict.NOT_IN_FAILURE
    if in_batch and batch_status not in RETRYABLE_BATCH_STATUSES:
        return MessageVerdict.BATCH_BLOCKED
    if not has_attempts_left(attempts, max_attempts):
        return MessageVerdict.EXHAUSTED
    return MessageVerdict.RETRYABLE


def batch_retry_verdict(
    batch_status: BatchStatus | None,
    messages: Iterable[tuple[MessageStatus | None, int]],
    *,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> BatchVerdict:
    """Batch retry, given each message's (status, attempts): the batch status must allow it;
    no message may still be ``created``; some failed message must have attempts left."""
    if batch_status not in RETRYABLE_BATCH_STATUSES:
        return BatchVerdict.NOT_RETRYABLE
    any_retryable = False
    for status, attempts in messages:
        if status == MessageStatus.CREATED:
            return BatchVerdict.UNRESOLVED
        if status == MessageStatus.FAILURE and has_attempts_left(attempts, max_attempts):
            any_retryable = True
    return BatchVerdict.RETRYABLE if any_retryable else BatchVerdict.NOTHING_TO_RETRY
