"""Reports returned by the orchestrator: every input ID accounted for exactly once."""

from __future__ import annotations

import enum
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import attrs

from ._files import open_private
from ._seen_ids import SeenIds
from .converter import encode
from .errors import APIError, OutcomeUnknownError, PostmanError, ValidationError
from .models import Message, MessageStatus


class Outcome(str, enum.Enum):
    """What happened to one message ID in a retry run."""

    RETRIED = "retried"
    NOT_IN_FAILURE = "skipped_not_in_failure"
    NOT_FOUND = "skipped_not_found"
    EXHAUSTED = "attempts_exhausted"
    BATCH_BLOCKED = "blocked_by_batch_status"
    ERROR = "error"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


def _applied_by_outcome(result: MessageResult) -> bool | None:
    """What an outcome alone says of whether the retry took (when the creator did not say)."""
    if result.outcome == Outcome.RETRIED:
        return True
    if result.outcome == Outcome.CANCELLED:
        return None  # cancelled in flight: its POST may have gone out
    if result.outcome == Outcome.ERROR:
        if isinstance(result.error, OutcomeUnknownError):
            return result.error.applied
        if result.error is None:
            return None  # an error no exception explains: a POST cannot be ruled out
    return False


@attrs.frozen
class MessageResult:
    """The outcome for one ID. ``message`` is the retried message (when kept), ``error`` the
    exception for ``ERROR``/``CANCELLED``, ``detail`` a short human reason.

    ``applied`` says whether this run's retry took: ``True`` (retried), ``False`` (it did not:
    refused, never sent, or read back and shown not to have taken) or ``None`` (unknown: a
    POST went out, or may have, and no answer or read shows what it did; see
    :attr:`uncertain`). Left out, it follows from the outcome and the error, erring on the
    side of unknown: ``True`` for ``RETRIED``; ``None`` for ``CANCELLED`` and for an
    ``ERROR`` without an exception; the error's ``applied`` for an
    :class:`OutcomeUnknownError` (the only error a POST that may have been applied raises);
    else ``False``."""

    message_id: str
    outcome: Outcome
    detail: str | None = None
    message: Message | None = None
    error: BaseException | None = None
    applied: bool | None = attrs.field(
        default=attrs.Factory(_applied_by_outcome, takes_self=True), kw_only=True
    )

    def to_dict(self) -> dict[str, Any]:
        """This result as JSON-ready data (camelCase keys; an error as its type, message,
        status and code; ``"uncertain": true`` when the retry may have been applied)."""
        out: dict[str, Any] = {"messageId": self.message_id, "outcome": self.outcome.value}
        if self.detail:
            out["detail"] = self.detail
        if self.uncertain:
            out["uncertain"] = True
        if self.error is not None:
            out["error"] = {"type": type(self.error).__name__, "message": str(self.error)}
            if isinstance(self.error, APIError):
                out["error"]["status"] = self.error.status
                out["error"]["code"] = self.error.code
        if self.message is not None:
            out["message"] = encode(self.message)
        return out

    @property
    def uncertain(self) -> bool:
        """The retry may have been applied and nothing read since shows whether (an outcome
        unknown after a POST, or cancelled while its POST was in flight). Never feed such an
        ID to another ``retry_messages``: a second POST could deliver a second SMS. Check it
        with ``retry_until_settled``, which reads before it retries."""
        return self.applied is None

    @property
    def worth_another_run(self) -> bool:
        """A transient error or an ambiguous outcome: another attempt may still retry it.
        It includes :attr:`uncertain` results, which only something that reads the message
        first (``retry_until_settled``, a retry job's journal) may try again;
        :meth:`RetryReport.failures` leaves them out."""
        if self.outcome == Outcome.CANCELLED:
            return True
        if self.outcome != Outcome.ERROR:
            return False
        return not isinstance(self.error, ValidationError)


class RetryReport:
    """One result per distinct input ID, plus counters. Iterate it for the results.

    With a ``sink`` (a callable taking each :class:`MessageResult`), results go there as they
    complete and the report keeps only counters and the IDs in flight: iterating it yields
    nothing. Duplicates are still detected (``SeenIds``: 8 bytes per distinct ID)."""

    def __init__(self, sink: Callable[[MessageResult], Any] | None = None) -> None:
        self._results: dict[str, MessageResult | None] = {}
        self.sink = sink
        self._seen: SeenIds | None = None
        if sink is not None:
            self._seen = SeenIds()
        self.counts: Counter[Outcome] = Counter()
        #: results whose retry may have been applied (:attr:`MessageResult.uncertain`)
        self.uncertain_count = 0
        self.duplicates = 0
        self.calls = 0
        self.elapsed = 0.0
        self.finished = False

    # -- building ---------------------------------------------------------------------------

    def claim(self, message_id: str) -> bool:
        """Reserve an ID for this run; False for a duplicate."""
        duplicate = (
            message_id in self._results if self._seen is None else not self._seen.add(message_id)
        )
        if duplicate:
            self.duplicates += 1
            return False
        self._results[message_id] = None
        return True

    def record(self, result: MessageResult) -> None:
        """Record the one result of a claimed ID. Raises ``RuntimeError`` if it already has one."""
        if self._results.get(result.message_id) is not None:
            raise RuntimeError(f"{result.message_id} already has a result")
        self.counts[result.outcome] += 1
        if result.uncertain:
            self.uncertain_count += 1
        if self.sink is None:
            self._results[result.message_id] = result
            return
        self._results.pop(result.message_id, None)  # only the IDs in flight stay
        self.sink(result)

    # -- reading ----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[MessageResult]:
        return (r for r in self._results.values() if r is not None)

    def __len__(self) -> int:
        return sum(self.counts.values())

    def __getitem__(self, message_id: str) -> MessageResult:
        result = self._results[message_id]
        if result is None:
            raise KeyError(message_id)
        return result

    def __contains__(self, message_id: object) -> bool:
        return self._results.get(message_id) is not None  # type: ignore[call-overload]

    @property
    def pending(self) -> list[str]:
        """IDs taken from the input that have no result (only after a cancellation or a
        fatal error)."""
        return [i for i, r in self._results.items() if r is None]

    def ids(self, *outcomes: Outcome) -> list[str]:
        """The IDs whose result has one of ``outcomes``."""
        return [r.message_id for r in self if r.outcome in outcomes]

    def failures(self) -> list[str]:
        """IDs safe to feed into another ``retry_messages`` run: transient errors where no
        retry took, ambiguous failures read back as not applied, and IDs cancelled before
        their POST was sent. IDs whose retry may have been applied are not among them: see
        :meth:`uncertain`."""
        return [r.message_id for r in self if r.worth_another_run and not r.uncertain]

    def uncertain(self) -> list[str]:
        """IDs whose retry may have been applied: the outcome was unknown after the POST, or
        the run was cancelled while the POST was in flight. Check these with
        ``retry_until_settled``, which reads before it retries; never feed them back to
        ``retry_messages`` (a second POST could deliver a second SMS)."""
        return [r.message_id for r in self if r.uncertain]

    def summary(self) -> str:
        """One line: counts per outcome, duplicates, calls and elapsed time."""
        parts = [f"{len(self)} messages"]
        parts += [f"{o.value}={self.counts[o]}" for o in Outcome if self.counts[o]]
        if self.uncertain_count:
            parts.append(f"uncertain={self.uncertain_count}")
        parts.append(f"duplicates={self.duplicates}")
        parts.append(f"calls={self.calls}")
        parts.append(f"elapsed={self.elapsed:.1f}s")
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The whole report as JSON-ready data: ``summary`` (counts, uncertain, calls,
        elapsed, finished) and one ``results`` entry per ID."""
        return {
            "summary": {
                "messages": len(self),
                "counts": {o.value: self.counts[o] for o in Outcome},
                "uncertain": self.uncertain_count,
                "duplicates": self.duplicates,
                "calls": self.calls,
                "elapsedSeconds": round(self.elapsed, 3),
                "finished": self.finished,
            },
            "results": [r.to_dict() for r in self],
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` to ``path`` as JSON, in a file only its owner can read (mode
        0600: it holds recipients and message text). Raises ``OSError`` if it cannot be
        written."""
        with open_private(path) as handle:
            json.dump(self.to_dict(), handle, indent=1)

    def __repr__(self) -> str:
        return f"<RetryReport {self.summary()}>"


class BatchRetryReason(str, enum.Enum):
    FIRED = "fired"
    UNRESOLVED = "unresolved_batch_messages"
    BATCH_STATUS = "batch_not_found_or_is_not_retryable"
    NOTHING_TO_RETRY = "no_failed_batch_messages_to_retry"
    OUTCOME_UNKNOWN = "outcome_unknown"
    ERROR = "error"

    def __str__(self) -> str:
        return self.value


@attrs.define
class BatchRetryReport:
    """What ``retry_batch`` did: whether the POST was fired, and why or why not."""

    batch_id: str
    fired: bool = False
    reason: BatchRetryReason = BatchRetryReason.ERROR
    batch_status: str | None = None
    retried_ids: list[str] = attrs.field(factory=list)
    exhausted_ids: list[str] = attrs.field(factory=list)
    unresolved_ids: list[str] = attrs.field(factory=list)
    messages: int = 0
    error: PostmanError | None = None
    detail: str | None = None
    calls: int = 0
    elapsed: float = 0.0

    def summary(self) -> str:
        """One line: fired or why not, messages, retried, exhausted and unresolved, calls."""
        verb = "fired" if self.fired else f"not fired ({self.reason.value})"
        detail = f" ({self.detail})" if self.detail else ""
        return (
            f"batch {self.batch_id}: {verb}; {self.messages} messages, "
            f"{len(self.retried_ids)} retried, {len(self.exhausted_ids)} exhausted{detail}, "
            f"{len(self.unresolved_ids)} unresolved; calls={self.calls}"
        )

    def to_dict(self) -> dict[str, Any]:
        """This report as JSON-ready data (camelCase keys)."""
        return {
            "batchId": self.batch_id,
            "fired": self.fired,
            "reason": self.reason.value,
            "batchStatus": self.batch_status,
            "messages": self.messages,
            "retriedIds": self.retried_ids,
            "exhaustedIds": self.exhausted_ids,
            "unresolvedIds": self.unresolved_ids,
            "error": str(self.error) if self.error else None,
            "detail": self.detail,
            "calls": self.calls,
            "elapsedSeconds": round(self.elapsed, 3),
        }


@attrs.frozen
class MessageState:
    """A message's state as last read: status, attempts so far, newest delivery error."""

    message_id: str
    status: MessageStatus | None
    attempts: int | None = None
    error_code: str | None = None
    recipient: str | None = None
    batch_id: str | None = None

    @classmethod
    def of(cls, message: Message, batch_id: str | None = None) -> MessageState:
        """The state of ``message`` as read (its batch: ``batch_id``, else its first batch)."""
        return cls(
            message_id=message.id,
            status=message.latest_status,
            attempts=message.attempt_count,
            error_code=message.latest_error_code,
            recipient=message.recipient,
            batch_id=batch_id or (message.batch_ids[0] if message.batch_ids else None),
        )


@attrs.define
class OutcomesReport:
    """Final (or last seen) state of each message after ``wait_for_outcomes``."""

    states: dict[str, MessageState] = attrs.field(factory=dict)
    pending: list[str] = attrs.field(factory=list)
    missing: list[str] = attrs.field(factory=list)
    read_errors: int = 0  # reads that failed (read again at the next poll)
    calls: int = 0
    elapsed: float = 0.0

    @property
    def statuses(self) -> Mapping[str, MessageStatus | None]:
        """The last status read per message ID."""
        return {i: s.status for i, s in self.states.items()}

    def count(self, status: MessageStatus) -> int:
        """How many messages were last read with ``status``."""
        return sum(1 for s in self.states.values() if s.status == status)


@attrs.define
class RoundReport:
    """One settle round: what was read, what was retried and how, and the calls it spent.

    ``probes``: single retries sent one at a time to learn the server's attempt cap.
    """

    number: int
    failed: int = 0
    batch_retries: list[str] = attrs.field(factory=list)
    single_retries: int = 0
    probes: int = 0
    not_worth_retrying: int = 0
    exhausted: int = 0
    calls_reads: int = 0
    calls_batch_retries: int = 0
    calls_single_retries: int = 0
    notes: list[str] = attrs.field(factory=list)

    @property
    def calls(self) -> int:
        """The calls this round spent: reads, batch retries and single retries."""
        return self.calls_reads + self.calls_batch_retries + self.calls_single_retries


@attrs.define
class SettleReport:
    """Result of ``retry_until_settled``: per-message final state and per-round accounting."""

    states: dict[str, MessageState] = attrs.field(factory=dict)
    rounds: list[RoundReport] = attrs.field(factory=list)
    unsettled: list[str] = attrs.field(factory=list)
    #: failed messages known to be out of attempts, and what is known of the cap
    exhausted: list[str] = attrs.field(factory=list)
    attempt_cap: str = ""
    #: message and batch IDs the server says do not exist
    not_found: list[str] = attrs.field(factory=list)
    calls: int = 0
    elapsed: float = 0.0

    @property
    def delivered(self) -> int:
        """Messages whose last status read is ``success``."""
        return sum(1 for s in self.states.values() if s.status == MessageStatus.SUCCESS)

    @property
    def failed_for_good(self) -> Counter[str]:
        """Messages that ended in failure, by their last delivery error code."""
        return Counter(
            s.error_code or "unknown"
            for s in self.states.values()
            if s.status == MessageStatus.FAILURE
        )

    @property
    def delivered_per_call(self) -> float:
        """Delivered messages per call spent (0 when no call was made)."""
        return self.delivered / self.calls if self.calls else 0.0

    def calls_by_purpose(self) -> dict[str, int]:
        """Calls spent on reads, batch retries and single retries."""
        return {
            "reads": sum(r.calls_reads for r in self.rounds),
            "batch_retries": sum(r.calls_batch_retries for r in self.rounds),
            "single_retries": sum(r.calls_single_retries for r in self.rounds),
        }

    def summary(self) -> str:
        """One line: messages, delivered, failed for good (by error), exhausted, unsettled,
        not found, rounds and calls."""
        failed = ", ".join(f"{code} {n}" for code, n in sorted(self.failed_for_good.items()))
        calls = ", ".join(f"{purpose} {n}" for purpose, n in self.calls_by_purpose().items())
        missing = f"not found: {len(self.not_found)}, " if self.not_found else ""
        return (
            f"{len(self.states)} messages, {self.delivered} delivered, "
            f"failed for good: {sum(self.failed_for_good.values())}"
            + (f" ({failed})" if failed else "")
            + f", exhausted: {len(self.exhausted)} ({self.attempt_cap}), "
            f"unsettled: {len(self.unsettled)}, {missing}rounds: {len(self.rounds)}, "
            f"calls: {self.calls} ({calls}), delivered per call: {self.delivered_per_call:.2f}"
        )


class Phase(str, enum.Enum):
    """What a settle run is doing."""

    READING = "reading"
    RETRYING_BATCHES = "retrying_batches"
    RETRYING_MESSAGES = "retrying_messages"
    DONE = "done"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class SettleProgress:
    """A settle run's progress, given to ``on_progress`` at each phase change."""

    phase: Phase
    round: int
    messages: int  # messages known so far
    settled: int  # of those, final
    delivered: int
    failed: int  # in failure now (retried, or for good)
    calls: int
    elapsed: float

    def describe(self) -> str:
        """One line for a progress display: round, phase, final of known, delivered, failed,
        calls."""
        return (
            f"round {self.round}: {self.phase.value.replace('_', ' ')}; "
            f"{self.settled}/{self.messages} final, {self.delivered} delivered, "
            f"{self.failed} failed; {self.calls} calls"
        )


def describe_unknown(error: OutcomeUnknownError) -> str:
    if error.applied is False:
        return "ambiguous failure; the read-back shows it was not applied (safe to run again)"
    return "ambiguous failure; outcome unknown (not re-sent)"
