"""The API's rules as the SDK reads them, in one table each. Pure: no I/O, no clock.

Everything on the SDK side that asks "is this final?", "may this be retried?", "may this batch
retry fire?" or "did that lost POST take?" asks here. The simulator has its own reading of the
same pages (``postman_async.testing.server_rules``) and the conformance tests hold the two
together, so a misreading shows as a disagreement instead of passing on both sides.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable

import attrs

from .models import BatchStatus, MessageStatus

#: §5: a batch (and a batch message) may be retried only in these statuses.
RETRYABLE_BATCH_STATUSES = frozenset(
    {BatchStatus.MESSAGES_ENQUEUED, BatchStatus.MESSAGES_ENQUEUING_FAILED}
)
#: §4.4: delivery errors that a retry will not fix (``content_invalid``: the newer page says No).
NOT_WORTH_RETRYING = frozenset({"recipient_invalid", "content_invalid"})
#: §5, §6.1: both readings of the cap ("maximum number of attempts of 3" and "retried 3 times")
#: allow at least this many attempts, so a retry below it is never in doubt.
DOCUMENTED_MIN_CAP = 3


class MessageVerdict(enum.Enum):
    """What a single retry POST will answer, as far as the SDK can tell."""

    RETRYABLE = "retryable"
    NOT_IN_FAILURE = "not_in_failure"
    EXHAUSTED = "exhausted"
    BATCH_BLOCKED = "batch_blocked"

    @property
    def error_code(self) -> str | None:
        """The documented code the server answers with (``None``: 201)."""
        return _MESSAGE_CODES[self]


_MESSAGE_CODES = {
    MessageVerdict.RETRYABLE: None,
    MessageVerdict.NOT_IN_FAILURE: "message_not_found_or_retry_message_not_in_failure_status",
    MessageVerdict.EXHAUSTED: "too_many_message_attempts_error",
    # No code of its own is documented; the server answers as for "not in failure".
    MessageVerdict.BATCH_BLOCKED: "message_not_found_or_retry_message_not_in_failure_status",
}


class BatchVerdict(enum.Enum):
    """What a batch retry POST will answer; only ``RETRYABLE`` may fire."""

    RETRYABLE = "retryable"
    NOT_RETRYABLE = "batch_not_found_or_is_not_retryable"
    UNRESOLVED = "unresolved_batch_messages"
    NOTHING_TO_RETRY = "no_failed_batch_messages_to_retry"

    @property
    def error_code(self) -> str | None:
        return None if self is BatchVerdict.RETRYABLE else self.value


# -- statuses ---------------------------------------------------------------------------------


def is_foreign(recipient: str | None) -> bool | None:
    """§3.3: a number without the ``65`` country code is foreign; ``None`` when unknown."""
    if not recipient:
        return None
    return not recipient.startswith("65")


def is_final(status: MessageStatus | None, recipient: str | None) -> bool:
    """§3.3: ``success`` and ``failure`` are final; ``sent_to_telco`` is final for a foreign
    number (and not for a local one, or when the recipient is unknown)."""
    if status in (MessageStatus.SUCCESS, MessageStatus.FAILURE):
        return True
    return status == MessageStatus.SENT_TO_TELCO and is_foreign(recipient) is True


def is_unresolved(status: MessageStatus | None) -> bool:
    """§5: a batch message still ``created`` makes a batch retry fail and flips the batch."""
    return status == MessageStatus.CREATED


def batch_allows_retry(status: BatchStatus | None) -> bool | None:
    """§5: whether the batch status allows a retry; ``None`` when the status is absent or a
    value the docs do not name (then only the server can tell)."""
    if status is None or not status.is_known:
        return None
    return status in RETRYABLE_BATCH_STATUSES


def worth_retrying(error_code: str | None, not_worth: Collection[str] = NOT_WORTH_RETRYING) -> bool:
    """§4.4: a failure whose delivery error a retry may fix."""
    return error_code not in not_worth


# -- the attempt cap --------------------------------------------------------------------------


@attrs.define
class AttemptCap:
    """What is known of the server's attempt cap (attempts including the original send).

    The docs allow 3 or 4 (§5, §6.1). The SDK never refuses a retry on its own assumption:
    it learns from the server's answers. ``lower``: every count below it is known to be
    retryable; ``upper``: a count at or above it is known to be refused (``None``: none seen).
    """

    lower: int = DOCUMENTED_MIN_CAP
    upper: int | None = None

    @classmethod
    def known(cls, cap: int) -> AttemptCap:
        """A cap given by the caller (not learned)."""
        return cls(lower=cap, upper=cap)

    @property
    def value(self) -> int | None:
        """The cap, once known exactly."""
        return self.upper if self.upper is not None and self.upper <= self.lower else None

    def refuses(self, attempts: int) -> bool:
        """Known to be out of attempts."""
        return self.upper is not None and attempts >= self.upper

    def allows(self, attempts: int) -> bool:
        """Known to have attempts left."""
        return attempts < self.lower

    def learn_refused(self, attempts: int) -> None:
        """The server refused a retry of a message with ``attempts`` attempts."""
        self.upper = attempts if self.upper is None else min(self.upper, attempts)
        self.lower = min(self.lower, self.upper)

    def learn_accepted(self, attempts: int) -> None:
        """The server accepted a retry of a message with ``attempts`` attempts."""
        self.lower = max(self.lower, attempts + 1)
        if self.upper is not None and self.upper < self.lower:
            self.upper = self.lower  # contradicting answers: trust the newest

    def describe(self) -> str:
        """What is known of the cap, as a phrase for reports ("the server's cap is 3 attempts")."""
        if self.value is not None:
            return f"the server's cap is {self.value} attempts"
        if self.upper is not None:
            return f"the server refuses at {self.upper} attempts"
        if self.lower > DOCUMENTED_MIN_CAP:
            return f"the server allows at least {self.lower} attempts"
        return "the server's cap is not known yet"


# -- verdicts ---------------------------------------------------------------------------------


def message_retry_verdict(
    status: MessageStatus | None,
    attempts: int | None,
    *,
    in_batch: bool = False,
    batch_status: BatchStatus | None = None,
    cap: AttemptCap | None = None,
) -> MessageVerdict:
    """§5 single retry: only from ``failure``; for a batch message only while the batch status
    allows it; only with attempts left. What cannot be known (an unread batch status, a cap not
    yet learned) is left to the server: its 400 costs one call and changes nothing."""
    if status != MessageStatus.FAILURE:
        return MessageVerdict.NOT_IN_FAILURE
    if in_batch and batch_allows_retry(batch_status) is False:
        return MessageVerdict.BATCH_BLOCKED
    if cap is not None and attempts is not None and cap.refuses(attempts):
        return MessageVerdict.EXHAUSTED
    return MessageVerdict.RETRYABLE


def batch_retry_verdict(
    batch_status: BatchStatus | None,
    messages: Iterable[tuple[MessageStatus | None, int | None]],
    *,
    cap: AttemptCap | None = None,
) -> BatchVerdict:
    """§5 batch retry, given each message's (status, attempts), in the server's order: the
    batch status must allow it; no message may be ``created``; some failed message must have
    attempts left. A status that cannot be read does not block (its 400 has no side effect);
    a ``created`` message always does (its 400 flips the batch)."""
    if batch_allows_retry(batch_status) is False:
        return BatchVerdict.NOT_RETRYABLE
    any_retryable = False
    for status, attempts in messages:
        if is_unresolved(status):
            return BatchVerdict.UNRESOLVED
        if status == MessageStatus.FAILURE and not (
            cap is not None and attempts is not None and cap.refuses(attempts)
        ):
            any_retryable = True
    return BatchVerdict.RETRYABLE if any_retryable else BatchVerdict.NOTHING_TO_RETRY


def retry_took(
    *,
    status_before: MessageStatus | None,
    attempts_before: int | None,
    status_after: MessageStatus | None,
    attempts_after: int | None,
) -> bool | None:
    """Did a retry POST whose answer was lost take? Decided from what was read before and
    after: a new attempt, or a message that left ``failure`` (only a retry moves it on), means
    it took; otherwise the same count means it did not; with no counts, unknown."""
    left_failure = (
        status_before == MessageStatus.FAILURE
        and status_after is not None
        and status_after != MessageStatus.FAILURE
    )
    if attempts_before is not None and attempts_after is not None:
        return attempts_after > attempts_before or left_failure
    return True if left_failure else None
