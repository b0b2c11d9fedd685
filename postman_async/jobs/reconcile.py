"""What a new lease holder makes of a crashed holder's intent. Pure: no I/O, no clock.

An intent says a POST may have gone out within ``window`` of ``at``. Once ``window`` plus
the HTTP timeout have passed, that POST has been processed or never will be, and one read of
the message tells which:

- attempts above the baseline: it took. Record ``retried`` and never POST again, even if the
  message has failed again since (a second POST would spend an attempt the user did not ask
  for, and could deliver a second SMS);
- still ``failure`` at the baseline: it did not take, so POST now;
- otherwise (it left ``failure`` without a new attempt): record from the status;
- no baseline: the time rule of :func:`~postman_async.protocol.retry_applied` (an attempt
  created after the intent took); when that cannot tell, an explicit "outcome unknown".
"""

from __future__ import annotations

import attrs

from ..models import Message, MessageStatus
from ..protocol import retry_applied
from ..reports import MessageResult, MessageState, Outcome


@attrs.frozen
class Intent:
    """A journal entry: a POST for ``message_id`` may have gone out from ``epoch``'s holder
    within the window after ``at_ms`` (Redis time)."""

    raw: str
    epoch: int
    at_ms: int
    attempts: int | None
    status: MessageStatus | None

    @classmethod
    def parse(cls, raw: str) -> Intent:
        """Read an intent as stored (``epoch|at_ms|attempts|status``)."""
        epoch, at_ms, attempts, status = [*raw.split("|"), "", ""][:4]
        return cls(
            raw=raw,
            epoch=int(epoch),
            at_ms=int(at_ms),
            attempts=int(attempts) if attempts else None,
            status=MessageStatus(status) if status else None,
        )

    def settled_at_ms(self, window: float, http_timeout: float) -> int:
        """When a POST sent under this intent has certainly been processed or dropped."""
        return self.at_ms + int((window + http_timeout) * 1000)


@attrs.frozen
class Verdict:
    """``result`` to record, or ``None``: the retry did not take, POST it now."""

    result: MessageResult | None


def reconcile(
    message_id: str,
    intent: Intent,
    message: Message | None,
    *,
    server_date: str | None,
    seconds_since_intent: float,
) -> Verdict:
    """Decide from one read (``message`` None: the server says it does not exist)."""
    if message is None:
        return Verdict(MessageResult(message_id, Outcome.NOT_FOUND, "no such message"))
    status, attempts = message.latest_status, message.attempt_count
    if intent.attempts is not None and attempts is not None:
        if attempts > intent.attempts:
            how = f"attempts {intent.attempts} -> {attempts}, now {status}"
            return Verdict(_took(message_id, how))
        if status == MessageStatus.FAILURE:
            return Verdict(None)
        return Verdict(_not_in_failure(message_id, status))
    took = retry_applied(
        message,
        attempts_before=None,
        status_before=intent.status,
        server_date=server_date,
        elapsed=seconds_since_intent,
    )
    if took:
        return Verdict(_took(message_id, "an attempt created after the intent"))
    if took is False:
        if status == MessageStatus.FAILURE:
            return Verdict(None)
        return Verdict(_not_in_failure(message_id, status))
    return Verdict(
        MessageResult(
            message_id,
            Outcome.ERROR,
            "outcome unknown: a worker crashed around the retry POST and, without a known "
            f"attempt count, the read (status {status}) cannot tell whether it took; "
            "it was not re-sent",
        )
    )


def _took(message_id: str, how: str) -> MessageResult:
    return MessageResult(
        message_id,
        Outcome.RETRIED,
        f"retried before a worker crash ({how}); confirmed by read-back, not re-sent",
    )


def _not_in_failure(message_id: str, status: MessageStatus | None) -> MessageResult:
    return MessageResult(message_id, Outcome.NOT_IN_FAILURE, f"status {status}")


#: Allowance (ms) between Redis's clock and the server's when judging an attempt's age
#: (both NTP-synchronised; an attempt this close before the lost job counts as its retry).
CLOCK_SKEW_MS = 1000


def decide_after_loss(
    message_id: str,
    message: Message | None,
    *,
    since_ms: int,
    known: MessageState | None,
) -> MessageResult | MessageState:
    """A job submitted again after Redis lost it: decide one ID from a read, before any POST.

    The lost job may have retried it, and its journal is gone. More attempts than the
    input's known count (exact), or, without a known count, an attempt newer than the lost
    job's creation (``since_ms``, Redis time, less :data:`CLOCK_SKEW_MS`), means "retried
    earlier": record it, never POST. Without a count and with the start unknown
    (``since_ms`` 0), an ID still in ``failure`` is an error "outcome unknown", not re-sent.
    Still ``failure`` without such an attempt: the state to POST from (its attempt count
    becomes the intent's baseline). Anything else: recorded from the status."""
    if message is None:
        return MessageResult(message_id, Outcome.NOT_FOUND, "no such message")
    attempts = message.attempt_count
    base = known.attempts if known is not None else None
    if base is not None and attempts is not None:
        if attempts > base:  # exact: the input's count was read before the lost job ran
            return _earlier(message_id, f"attempts {base} -> {attempts}")
    elif since_ms <= 0:  # the lost job's start is unknown: no attempt's age can tell
        if message.latest_status == MessageStatus.FAILURE:
            return _unknown_start(message_id)
    else:
        for attempt in (message.attempts or ()) + (message.message_attempts or ()):
            created = attempt.created_at
            if created is not None and created.timestamp() * 1000 >= since_ms - CLOCK_SKEW_MS:
                return _earlier(message_id, f"an attempt created at {created.isoformat()}")
    if message.latest_status == MessageStatus.FAILURE:
        return MessageState(message_id, MessageStatus.FAILURE, attempts)
    return _not_in_failure(message_id, message.latest_status)


def _unknown_start(message_id: str) -> MessageResult:
    return MessageResult(
        message_id,
        Outcome.ERROR,
        "outcome unknown: Redis lost the job's data, and neither an attempt count nor the "
        "lost job's start is known to tell whether it retried this; it was not re-sent",
    )


def _earlier(message_id: str, how: str) -> MessageResult:
    return MessageResult(
        message_id,
        Outcome.RETRIED,
        f"retried earlier (found by read-back: {how}, after the job's data was lost); not re-sent",
    )
