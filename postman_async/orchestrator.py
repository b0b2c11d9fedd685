"""RetryOrchestrator: retries many failed messages as fast as the campaign's budget allows,
with no wasted call, no double send, and an exact account of every message ID.

- ``retry_messages``: a bounded pool of workers pulls IDs from any (async) iterable; one call
  per message on the happy path (the retry POST's typed 400 tells eligibility).
- ``retry_batch``: reads the batch in bulk and fires the batch retry only when it can succeed.
- ``wait_for_outcomes``: polls with backoff, one batch-listing call per 1000 batch messages.
- ``retry_until_settled``: rounds of wait -> retry, planned per batch, until nothing is left
  worth retrying.

All calls go in the limiter's BULK lane, so urgent sends from the same process go first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Collection,
    Iterable,
    Mapping,
)
from typing import Any

from ._session import count_calls
from .client import PostmanClient
from .eligibility import (
    DEFAULT_MAX_ATTEMPTS,
    NOT_WORTH_RETRYING,
    BatchVerdict,
    batch_retry_verdict,
    has_attempts_left,
)
from .errors import (
    AuthenticationError,
    BatchNotRetryableError,
    IpNotAllowedError,
    MessageNotRetryableError,
    NoFailedBatchMessagesError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    PostmanError,
    RateLimiterUnavailableError,
    RetryBudgetExhaustedError,
    TooManyAttemptsError,
    UnresolvedBatchMessagesError,
    ValidationError,
)
from .models import BatchStatus, Message, MessageStatus, Priority
from .ratelimit import Clock, RateLimiter, Sleep
from .reports import (
    BatchRetryReason,
    BatchRetryReport,
    MessageResult,
    MessageState,
    Outcome,
    OutcomesReport,
    RetryReport,
    RoundReport,
    SettleReport,
    describe_unknown,
)
from .validation import validate_id

logger = logging.getLogger("postman_async")

#: Errors that every further call would repeat: the run stops instead of spending the budget.
FATAL_ERRORS = (
    AuthenticationError,
    IpNotAllowedError,
    PermissionDeniedError,
    RetryBudgetExhaustedError,
    RateLimiterUnavailableError,
)
ProgressCallback = Callable[[RetryReport], None]
#: Batch-retry outcomes that may change by the next round.
_TRY_AGAIN = frozenset(
    {BatchRetryReason.UNRESOLVED, BatchRetryReason.OUTCOME_UNKNOWN, BatchRetryReason.ERROR}
)


class RetryOrchestrator:
    """Plans and runs retries for one client (one campaign).

    ``concurrency`` bounds the workers (calls in flight); ``max_attempts`` is the API's cap
    (attempts including the original send); ``keep_messages=False`` keeps only outcomes, for
    runs over millions of IDs; ``budget_share`` (0..1] is the share of the campaign's rate its
    calls may use, leaving the rest for other work.
    """

    def __init__(
        self,
        client: PostmanClient,
        *,
        concurrency: int = 16,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        keep_messages: bool = True,
        diagnose_skips: bool = True,
        not_worth_retrying: Collection[str] = NOT_WORTH_RETRYING,
        poll_interval: float = 2.0,
        max_poll_interval: float = 30.0,
        telco_final_after: float = 0.0,
        budget_share: float = 1.0,
        priority: Priority = Priority.BULK,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if concurrency < 1:
            raise ValidationError("concurrency", "must be >= 1")
        if max_attempts < 1:
            raise ValidationError("max_attempts", "must be >= 1")
        if not 0 < budget_share <= 1:
            raise ValidationError("budget_share", "must be in (0, 1]")
        self.client = client
        self.concurrency = concurrency
        self.max_attempts = max_attempts
        self.keep_messages = keep_messages
        self.diagnose_skips = diagnose_skips
        self.not_worth_retrying = frozenset(not_worth_retrying)
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.telco_final_after = telco_final_after
        self.priority = priority
        self._clock = clock
        self._sleep = sleep
        # Headroom for other work on the campaign: our calls also pass a limiter of our own at
        # this share of the campaign's rate.
        self.budget_share = budget_share
        self._pacer = (
            RateLimiter(client.rate_limit * budget_share, clock=clock, sleep=sleep)
            if budget_share < 1
            else None
        )
        #: The report of the current (or last) ``retry_messages`` run, complete or partial.
        self.report: RetryReport | None = None

    async def _pace(self) -> None:
        if self._pacer is not None:
            await self._pacer.acquire()

    # -- single retries --------------------------------------------------------------------

    async def retry_messages(
        self,
        message_ids: Iterable[Any] | AsyncIterable[Any],
        *,
        on_progress: ProgressCallback | None = None,
        known_attempts: Mapping[str, int] | None = None,
    ) -> RetryReport:
        """Retry each distinct ID once. Returns a report with one result per distinct ID.

        ``known_attempts`` (ID -> attempt count last read) lets an ambiguous failure be
        reconciled exactly.

        Cancelling the call stops the workers promptly; ``self.report`` then holds what was
        done (IDs in flight are ``cancelled``: their retry may or may not have been applied).
        A fatal error (bad key, IP not allowed, retry budget spent) stops the run and is
        raised with the partial report as its ``report`` attribute.
        """
        report = RetryReport()
        self.report = report
        started = self._clock()
        source = _aiter(message_ids)
        pull_lock = asyncio.Lock()

        async def next_id() -> tuple[str, Any] | None:
            async with pull_lock:
                async for raw in source:
                    key = raw if isinstance(raw, str) else repr(raw)
                    if report.claim(key):
                        return key, raw
                return None

        with count_calls() as counter:

            async def worker() -> None:
                while (item := await next_id()) is not None:
                    key, raw = item
                    try:
                        result = await self._retry_one(
                            key, raw, known_attempts.get(key) if known_attempts else None
                        )
                    except asyncio.CancelledError:
                        report.record(
                            MessageResult(
                                key,
                                Outcome.CANCELLED,
                                "cancelled in flight: the retry may or may not have been applied",
                            )
                        )
                        raise
                    except FATAL_ERRORS as exc:
                        report.record(MessageResult(key, Outcome.ERROR, str(exc), error=exc))
                        raise
                    report.record(result)
                    report.calls = counter[0]
                    if on_progress is not None:
                        on_progress(report)

            try:
                await _run_workers(worker, self.concurrency)
            except BaseException as exc:
                exc.report = report  # type: ignore[attr-defined]
                raise
            finally:
                report.calls = counter[0]
                report.elapsed = self._clock() - started
        report.finished = True
        logger.info("retry run done: %s", report.summary())
        return report

    async def _retry_one(self, key: str, raw: Any, attempts_before: int | None) -> MessageResult:
        try:
            message_id = validate_id("message_id", raw)
        except ValidationError as exc:
            return MessageResult(key, Outcome.ERROR, str(exc), error=exc)
        try:
            await self._pace()
            message = await self.client.retry_message(
                message_id, attempts_before=attempts_before, priority=self.priority
            )
        except TooManyAttemptsError:
            return MessageResult(key, Outcome.EXHAUSTED, "maximum number of attempts reached")
        except MessageNotRetryableError:
            return await self._diagnose(message_id)
        except OutcomeUnknownError as exc:
            observed = exc.observed
            if (
                exc.applied is False
                and isinstance(observed, Message)
                and observed.latest_status != MessageStatus.FAILURE
            ):
                return MessageResult(
                    key,
                    Outcome.NOT_IN_FAILURE,
                    f"status {observed.latest_status} (read back after an ambiguous failure)",
                )
            return MessageResult(key, Outcome.ERROR, describe_unknown(exc), error=exc)
        except FATAL_ERRORS:
            raise
        except PostmanError as exc:
            return MessageResult(key, Outcome.ERROR, str(exc), error=exc)
        return MessageResult(
            key,
            Outcome.RETRIED,
            f"status {message.latest_status}",
            message=message if self.keep_messages else None,
        )

    async def _diagnose(self, message_id: str) -> MessageResult:
        """The server said "not found or not in failure". One read tells which, and whether the
        message's batch status is what blocked it."""
        if not self.diagnose_skips:
            return MessageResult(message_id, Outcome.NOT_IN_FAILURE, "not found or not failed")
        try:
            await self._pace()
            message = await self.client.get_message(message_id, priority=self.priority)
        except NotFoundError:
            return MessageResult(message_id, Outcome.NOT_FOUND, "no such message")
        except FATAL_ERRORS:
            raise
        except PostmanError as exc:
            return MessageResult(
                message_id, Outcome.NOT_IN_FAILURE, f"not found or not failed ({exc})"
            )
        batch = message.batch
        blocked = batch is not None and (batch.status is None or not batch.status.allows_retry)
        if message.latest_status == MessageStatus.FAILURE and batch is not None and blocked:
            return MessageResult(
                message_id, Outcome.BATCH_BLOCKED, f"batch {batch.id} is {batch.status}"
            )
        return MessageResult(message_id, Outcome.NOT_IN_FAILURE, f"status {message.latest_status}")

    # -- batch retries ---------------------------------------------------------------------

    async def _read_batch(self, batch_id: str) -> list[MessageState]:
        states: list[MessageState] = []
        async for page in self.client.list_batch_messages(
            batch_id, page_size=1000, priority=self.priority
        ).pages(before_each=self._pace):
            states.extend(MessageState.of(m, batch_id) for m in page.data)
        return states

    async def _batch_status(self, batch_id: str, sample_id: str) -> BatchStatus | None:
        """Batch status, read from one of its messages' ``batches[]`` (no batch GET exists)."""
        await self._pace()
        message = await self.client.get_message(sample_id, priority=self.priority)
        for batch in message.batches or ():
            if batch.id == batch_id:
                return batch.status
        return message.batch.status if message.batch else None

    async def retry_batch(self, batch_id: str, *, wait_unresolved: float = 0.0) -> BatchRetryReport:
        """Fire the batch retry only when it can succeed; say what was done, or why not.

        Reads the batch's messages in pages of 1000. With messages still ``created`` it does
        not fire (that would flip the batch to ``messages_enqueuing_failed``) unless
        ``wait_unresolved`` > 0, in which case it polls with backoff until they resolve or the
        time is up.
        """
        validate_id("batch_id", batch_id)
        report = BatchRetryReport(batch_id)
        started = self._clock()
        with count_calls() as counter:
            try:
                await self._retry_batch(batch_id, wait_unresolved, report)
            except FATAL_ERRORS:
                raise
            except PostmanError as exc:
                report.reason, report.error = BatchRetryReason.ERROR, exc
            finally:
                report.calls = counter[0]
                report.elapsed = self._clock() - started
        logger.info("%s", report.summary())
        return report

    async def _retry_batch(self, batch_id: str, wait: float, report: BatchRetryReport) -> None:
        try:
            states = await self._read_batch(batch_id)
        except NotFoundError as exc:
            report.reason, report.error = BatchRetryReason.BATCH_STATUS, exc
            return
        deadline = self._clock() + wait
        delay = self.poll_interval
        while _unresolved(states) and self._clock() < deadline:
            await self._sleep(min(delay, max(0.0, deadline - self._clock())))
            delay = min(delay * 1.5, self.max_poll_interval)
            states = await self._read_batch(batch_id)
        self._fill_batch_report(report, states)
        if not states:
            report.reason = BatchRetryReason.BATCH_STATUS
            return
        if report.unresolved_ids:
            report.reason = BatchRetryReason.UNRESOLVED
            return
        status = await self._batch_status(batch_id, states[0].message_id)
        report.batch_status = status.value if status is not None else None
        verdict = batch_retry_verdict(
            status, ((s.status, s.attempts or 0) for s in states), max_attempts=self.max_attempts
        )
        if verdict != BatchVerdict.RETRYABLE:
            report.reason = BatchRetryReason(verdict.value)
            report.retried_ids = []
            return
        await self._fire_batch_retry(batch_id, states, report)

    def _fill_batch_report(self, report: BatchRetryReport, states: list[MessageState]) -> None:
        report.messages = len(states)
        report.unresolved_ids = [s.message_id for s in states if s.status == MessageStatus.CREATED]
        failed = [s for s in states if s.status == MessageStatus.FAILURE]
        report.retried_ids = [
            s.message_id for s in failed if has_attempts_left(s.attempts or 0, self.max_attempts)
        ]
        report.exhausted_ids = [
            s.message_id
            for s in failed
            if not has_attempts_left(s.attempts or 0, self.max_attempts)
        ]

    async def _fire_batch_retry(
        self, batch_id: str, states: list[MessageState], report: BatchRetryReport
    ) -> None:
        """POST the batch retry; the server's answer is authoritative."""
        try:
            await self._pace()
            await self.client.retry_batch(batch_id, priority=self.priority)
        except BatchNotRetryableError as exc:
            report.reason, report.error = BatchRetryReason.BATCH_STATUS, exc
        except UnresolvedBatchMessagesError as exc:
            report.reason, report.error = BatchRetryReason.UNRESOLVED, exc
        except NoFailedBatchMessagesError as exc:
            report.reason, report.error = BatchRetryReason.NOTHING_TO_RETRY, exc
        except OutcomeUnknownError as exc:
            # Reconcile: a retried message has a new attempt (or left failure) if it took.
            before = {s.message_id: s.attempts or 0 for s in states}
            try:
                after = await self._read_batch(batch_id)
            except FATAL_ERRORS:
                raise
            except PostmanError:
                after = []
            took = any(
                s.message_id in before
                and s.message_id in report.retried_ids
                and ((s.attempts or 0) > before[s.message_id] or s.status != MessageStatus.FAILURE)
                for s in after
            )
            report.reason = BatchRetryReason.FIRED if took else BatchRetryReason.OUTCOME_UNKNOWN
            report.fired, report.error = took, None if took else exc
        except FATAL_ERRORS:
            raise
        except PostmanError as exc:  # e.g. still throttled after every HTTP retry
            report.reason, report.error = BatchRetryReason.ERROR, exc
        else:
            report.fired, report.reason = True, BatchRetryReason.FIRED
        if not report.fired:
            report.retried_ids = []

    # -- waiting for outcomes ------------------------------------------------------------

    def _is_final(self, state: MessageState, telco_since: dict[str, float]) -> bool:
        if state.status is not None and state.status.is_terminal:
            return True
        if _at_telco_abroad(state):
            first = telco_since.setdefault(state.message_id, self._clock())
            return self._clock() - first >= self.telco_final_after
        return False

    async def wait_for_outcomes(
        self,
        message_ids: Iterable[str] = (),
        *,
        batch_ids: Iterable[str] = (),
        timeout: float = 300.0,
    ) -> OutcomesReport:
        """Poll until every message is final (``success``/``failure``; ``sent_to_telco`` for a
        foreign number after ``telco_final_after`` s) or ``timeout`` s pass.

        Messages of ``batch_ids`` are read with batch listings (1000 a call); other IDs with
        GETs. Polling starts at ``poll_interval`` and backs off while nothing changes.
        """
        with count_calls() as counter:
            started = self._clock()
            report = await self._wait(list(message_ids), list(batch_ids), timeout)
            report.calls = counter[0]
            report.elapsed = self._clock() - started
        return report

    async def _wait(
        self,
        message_ids: list[str],
        batch_ids: list[str],
        timeout: float,
        *,
        initial_delay: float = 0.0,
        batch_pending: Mapping[str, set[str]] | None = None,
        batch_sizes: Mapping[str, int] | None = None,
    ) -> OutcomesReport:
        """Poll until final. For each batch, a poll reads whichever costs fewer calls: its
        listing (one call per 1,000 messages) or GETs of its still-pending messages (when known
        from ``batch_pending``). The delay between polls starts at ``poll_interval`` and grows
        while nothing changes; it never shrinks, as outcomes do not speed up."""
        for message_id in message_ids:
            validate_id("message_id", message_id)
        for batch_id in batch_ids:
            validate_id("batch_id", batch_id)
        report = OutcomesReport()
        deadline = self._clock() + timeout
        telco_since: dict[str, float] = {}
        pending: dict[str, set[str] | None] = {
            b: (set(batch_pending[b]) if batch_pending and b in batch_pending else None)
            for b in dict.fromkeys(batch_ids)
        }
        sizes = dict(batch_sizes or {})
        singles: list[str] | None = None
        delay = self.poll_interval
        if initial_delay > 0:
            await self._sleep(min(initial_delay, max(0.0, deadline - self._clock())))
        while True:
            changed = False
            for batch_id, waiting in list(pending.items()):
                pages = -(-sizes[batch_id] // 1000) if batch_id in sizes else None
                if waiting is not None and pages is not None and len(waiting) < pages:
                    states = await self._read_messages(waiting, batch_id, report)
                else:
                    try:
                        states = await self._read_batch(batch_id)
                    except FATAL_ERRORS:
                        raise
                    except PostmanError as exc:
                        report.read_errors += 1
                        logger.warning("reading batch %s failed (%s); next poll", batch_id, exc)
                        continue
                    sizes[batch_id] = len(states)
                    waiting = set()
                for state in states:
                    changed |= report.states.get(state.message_id) != state
                    report.states[state.message_id] = state
                    if self._is_final(state, telco_since):
                        waiting.discard(state.message_id)
                    else:
                        waiting.add(state.message_id)
                if waiting:
                    pending[batch_id] = waiting
                else:
                    del pending[batch_id]
            if singles is None:  # after the first batch read: the rest need GETs
                singles = [i for i in dict.fromkeys(message_ids) if i not in report.states]
            for state in await self._read_messages(singles, None, report):
                changed |= report.states.get(state.message_id) != state
                report.states[state.message_id] = state
                if self._is_final(state, telco_since):
                    singles.remove(state.message_id)
            if not pending and not singles:
                break
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            if not changed:
                delay = min(delay * 1.5, self.max_poll_interval)
            await self._sleep(min(delay, remaining))
        report.pending = [i for i, s in report.states.items() if not self._is_final(s, telco_since)]
        return report

    async def _read_messages(
        self, message_ids: Collection[str], batch_id: str | None, report: OutcomesReport
    ) -> list[MessageState]:
        """GET each message; a missing one is recorded and dropped from ``message_ids``."""
        states = []
        for message_id in list(message_ids):
            await self._pace()
            try:
                message = await self.client.get_message(message_id, priority=self.priority)
            except NotFoundError:
                report.missing.append(message_id)
                if isinstance(message_ids, (list, set)):
                    message_ids.remove(message_id)
                continue
            except FATAL_ERRORS:
                raise
            except PostmanError as exc:
                report.read_errors += 1
                logger.warning("reading %s failed (%s); next poll", message_id, exc)
                continue
            states.append(MessageState.of(message, batch_id))
        return states

    # -- settle loop ---------------------------------------------------------------------

    async def retry_until_settled(
        self,
        message_ids: Iterable[str] = (),
        *,
        batch_ids: Iterable[str] = (),
        timeout: float = 3600.0,
        max_rounds: int = 10,
    ) -> SettleReport:
        """Rounds of: wait for outcomes -> retry what failed and is worth retrying, until every
        message succeeded, used its attempts, failed with an error not worth retrying
        (``not_worth_retrying``), or the time is up.

        Batch messages are planned per batch: one batch-retry POST per round when it covers
        exactly the failures worth retrying; otherwise whichever costs fewer calls (the report
        says which and why). Messages outside any batch get single retries.
        """
        settle = SettleReport()
        started = self._clock()
        deadline = started + timeout
        batches = list(dict.fromkeys(batch_ids))
        watch_singles = list(dict.fromkeys(message_ids))
        watch_batches = list(batches)
        batch_pending: dict[str, set[str]] = {}
        batch_sizes: dict[str, int] = {}
        with count_calls() as total:
            for number in range(1, max_rounds + 1):
                round_report = RoundReport(number)
                settle.rounds.append(round_report)
                with count_calls() as reads:
                    outcomes = await self._wait(
                        watch_singles,
                        watch_batches,
                        max(0.0, deadline - self._clock()),
                        # After a retry nothing can have resolved yet: don't read at once.
                        initial_delay=0.0 if number == 1 else self.poll_interval,
                        batch_pending=batch_pending,
                        batch_sizes=batch_sizes,
                    )
                round_report.calls_reads = reads[0]
                settle.states.update(outcomes.states)
                plan_batches, plan_singles = self._plan(settle.states, batches, round_report)
                fired, waiting = await self._settle_batches(settle, plan_batches, round_report)
                retried: list[str] = []
                if plan_singles:
                    with count_calls() as single_calls:
                        run = await self.retry_messages(
                            plan_singles,
                            known_attempts={
                                i: settle.states[i].attempts or 0 for i in plan_singles
                            },
                        )
                    round_report.calls_single_retries = single_calls[0]
                    round_report.single_retries = run.counts[Outcome.RETRIED]
                    # Ambiguous ones are read again next round, never re-POSTed blindly.
                    retried = run.ids(Outcome.RETRIED, Outcome.ERROR, Outcome.CANCELLED)
                logger.info(
                    "settle round %d: %d failed, batch retries %s, %d single retries, %d calls",
                    number,
                    round_report.failed,
                    round_report.batch_retries,
                    round_report.single_retries,
                    round_report.calls,
                )
                watch_batches = fired + waiting
                covered = set(watch_batches)
                batch_sizes = Counter(
                    s.batch_id for s in settle.states.values() if s.batch_id in covered
                )
                batch_pending = {
                    b: {
                        s.message_id
                        for s in settle.states.values()
                        if s.batch_id == b
                        and s.status == MessageStatus.FAILURE
                        and has_attempts_left(s.attempts or 0, self.max_attempts)
                    }
                    for b in fired
                }
                watch_singles = [
                    i
                    for i in dict.fromkeys([*retried, *outcomes.pending])
                    if i not in settle.states or settle.states[i].batch_id not in covered
                ]
                if (not watch_batches and not watch_singles) or self._clock() >= deadline:
                    break
            settle.calls = total[0]
        settle.unsettled = [i for i, s in settle.states.items() if not self._settled(s)]
        settle.elapsed = self._clock() - started
        logger.info("settled: %s", settle.summary())
        return settle

    @staticmethod
    def _settled(state: MessageState) -> bool:
        terminal = state.status is not None and state.status.is_terminal
        return terminal or _at_telco_abroad(state)

    async def _settle_batches(
        self, settle: SettleReport, plan: list[str], round_report: RoundReport
    ) -> tuple[list[str], list[str]]:
        """Fire the planned batch retries; returns (fired, to wait for and try again)."""
        fired: list[str] = []
        waiting: list[str] = []
        with count_calls() as calls:
            for batch_id in plan:
                states = [s for s in settle.states.values() if s.batch_id == batch_id]
                report = BatchRetryReport(batch_id)
                self._fill_batch_report(report, states)
                await self._fire_batch_retry(batch_id, states, report)
                if report.fired:
                    fired.append(batch_id)
                    round_report.batch_retries.append(batch_id)
                    continue
                round_report.notes.append(f"batch {batch_id} not retried: {report.reason.value}")
                if report.reason in _TRY_AGAIN:  # read it again next round, then decide
                    waiting.append(batch_id)
        round_report.calls_batch_retries = calls[0]
        return fired, waiting

    def _plan(
        self, states: dict[str, MessageState], batch_ids: list[str], round_report: RoundReport
    ) -> tuple[list[str], list[str]]:
        """Which batches get one batch-retry POST, and which IDs get single retries."""
        worthy: dict[str | None, list[str]] = {}
        unworthy_with_attempts: dict[str | None, list[str]] = {}
        for state in states.values():
            if state.status != MessageStatus.FAILURE:
                continue
            round_report.failed += 1
            if not has_attempts_left(state.attempts or 0, self.max_attempts):
                round_report.exhausted += 1
                continue
            if state.error_code in self.not_worth_retrying:
                round_report.not_worth_retrying += 1
                unworthy_with_attempts.setdefault(state.batch_id, []).append(state.message_id)
                continue
            worthy.setdefault(state.batch_id, []).append(state.message_id)
        plan_batches: list[str] = []
        plan_singles: list[str] = list(worthy.pop(None, []))
        known_batches = set(batch_ids)
        for batch_id, ids in worthy.items():
            if batch_id not in known_batches:
                plan_singles.extend(ids)
                continue
            extra = unworthy_with_attempts.get(batch_id, [])
            if not extra or len(ids) > 1:
                plan_batches.append(batch_id)
                if extra:
                    round_report.notes.append(
                        f"batch {batch_id}: one batch retry (1 call) instead of {len(ids)} single "
                        f"retries; it also retries {len(extra)} message(s) not worth retrying"
                    )
            else:
                plan_singles.extend(ids)
                round_report.notes.append(
                    f"batch {batch_id}: 1 single retry, so the batch retry does not also retry "
                    f"{len(extra)} message(s) not worth retrying"
                )
        return plan_batches, plan_singles


def _at_telco_abroad(state: MessageState) -> bool:
    """``sent_to_telco`` is the final status for a foreign number (not for a ``65`` one)."""
    foreign = not (state.recipient or "").startswith("65")
    return foreign and state.status == MessageStatus.SENT_TO_TELCO


def _unresolved(states: list[MessageState]) -> bool:
    return any(s.status == MessageStatus.CREATED for s in states)


async def _aiter(source: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item


async def _run_workers(worker: Callable[[], Any], count: int) -> None:
    """Run ``count`` copies of ``worker``; on any failure or cancellation, cancel the rest
    and wait for them, so no task outlives the call."""
    tasks = [asyncio.ensure_future(worker()) for _ in range(count)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
