"""RetryOrchestrator: retries many failed messages as fast as the campaign's budget allows,
with no wasted call, no double send, and an exact account of every message ID.

- ``retry_messages``: a bounded pool of workers pulls IDs from any (async) iterable; one call
  per message on the happy path (the retry POST's typed 400 tells eligibility).
- ``retry_batch``: reads the batch in bulk and fires the batch retry only when it can succeed.
- ``wait_for_outcomes``: polls with backoff, one batch-listing call per 1000 batch messages.
- ``retry_until_settled``: rounds of wait -> retry, planned per batch, until nothing is left
  worth retrying.

The rules live in :mod:`postman_async.rules`, the planning in :mod:`postman_async.planner`
(pure); this class holds the settings and hands each call to an executor. All calls go in the
limiter's BULK lane, so urgent sends from the same process go first.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterable, Collection, Iterable, Mapping
from typing import Any

from . import telemetry
from ._batches import retry_batch
from ._executor import FATAL_ERRORS, Executor
from ._fanout import ProgressCallback, retry_each
from ._polling import poll
from ._settle import SettleCallback, settle
from .client import PostmanClient
from .errors import ValidationError
from .models import Priority
from .ratelimit import Clock, RateLimiter, Sleep
from .reports import BatchRetryReport, MessageState, OutcomesReport, RetryReport, SettleReport
from .rules import NOT_WORTH_RETRYING, AttemptCap
from .sinks import NdjsonSink, ResultSink, as_sink

logger = logging.getLogger("postman_async")

__all__ = ["FATAL_ERRORS", "ProgressCallback", "RetryOrchestrator", "SettleCallback"]


class RetryOrchestrator:
    """Plans and runs retries for one client (one campaign).

    ``concurrency`` bounds the workers (calls in flight). ``max_attempts`` is the API's attempt
    cap (attempts including the original send) when you know it; by default it is learned from
    the server's answers (the docs allow 3 or 4) and shared through ``client.attempt_cap``.
    ``keep_messages=False`` keeps only outcomes, for runs over millions of IDs;
    ``diagnose_skips`` spends one read on a refused retry to say why; ``not_worth_retrying``:
    delivery errors that settling leaves alone; ``poll_interval``/``max_poll_interval``: the
    polling backoff (s); ``telco_final_after``: seconds a foreign number must sit at
    ``sent_to_telco`` before it counts as final; ``budget_share`` (0..1]: the share of the
    campaign's rate these calls may use; ``priority``: the limiter lane; ``clock``/``sleep``:
    injectable time, for tests. Raises :class:`ValidationError` for a setting out of range.
    """

    def __init__(
        self,
        client: PostmanClient,
        *,
        concurrency: int = 16,
        max_attempts: int | None = None,
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
        if max_attempts is not None and max_attempts < 1:
            raise ValidationError("max_attempts", "must be >= 1")
        if not 0 < budget_share <= 1:
            raise ValidationError("budget_share", "must be in (0, 1]")
        self.client = client
        self.budget_share = budget_share
        self.executor = Executor.for_client(
            client,
            cap=None if max_attempts is None else AttemptCap.known(max_attempts),
            priority=priority,
            concurrency=concurrency,
            keep_messages=keep_messages,
            diagnose_skips=diagnose_skips,
            not_worth=not_worth_retrying,
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            telco_final_after=telco_final_after,
            clock=clock,
            sleep=sleep,
            pacer=RateLimiter(
                client.rate_limit * budget_share, pacing="margin", clock=clock, sleep=sleep
            )
            if budget_share < 1
            else None,
        )
        #: The report of the current (or last) ``retry_messages`` call, complete or partial.
        self.report: RetryReport | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def attempt_cap(self) -> AttemptCap:
        """What is known of the server's attempt cap (learned, unless ``max_attempts``)."""
        return self.executor.cap

    async def retry_messages(
        self,
        message_ids: Iterable[Any] | AsyncIterable[Any],
        *,
        on_progress: ProgressCallback | None = None,
        known_attempts: Mapping[str, int] | None = None,
        sink: ResultSink | str | os.PathLike[str] | None = None,
    ) -> RetryReport:
        """Retry each distinct ID once. Returns a report with one result per distinct ID.

        ``known_attempts`` (ID -> attempt count last read) lets an ambiguous failure be
        reconciled exactly and teaches the attempt cap. ``on_progress`` is called with the
        report after each result. ``sink``: a callable given each result as it completes, or
        a path to write them to as NDJSON; the report then keeps only counters (bounded
        memory for millions of IDs; see :mod:`postman_async.sinks`).

        :meth:`stop` ends it gracefully (the calls in flight finish). Cancelling the call
        stops the workers at once; ``self.report`` then holds what was done (IDs in flight
        are ``cancelled``: their retry may or may not have been applied).
        A fatal error (bad key, IP not allowed, retry budget spent) stops the run and is
        raised with the partial report as its ``report`` attribute. A single ``str`` (or
        ``bytes``) raises ``TypeError``: it would be retried character by character.
        """
        _refuse_single_id("message_ids", message_ids)
        target = as_sink(sink) if sink is not None else None
        report = self.report = RetryReport(sink=target)
        known = {i: MessageState(i, None, attempts=a) for i, a in (known_attempts or {}).items()}
        self._stopping = asyncio.Event()
        with telemetry.run_span("postman.retry_run") as span:
            try:
                await retry_each(
                    self.executor,
                    message_ids,
                    report,
                    known=known,
                    on_progress=on_progress,
                    stopping=self._stopping,
                )
            finally:
                if isinstance(target, NdjsonSink) and target is not sink:
                    target.close()
                if span is not None:
                    span.set_attribute("postman.ids", len(report))
                    span.set_attribute("postman.calls", report.calls)
                    for outcome, count in report.counts.items():
                        span.set_attribute(f"postman.outcome.{outcome.value}", count)
        logger.info("retry run done: %s", report.summary())
        return report

    def stop(self) -> None:
        """Stop the running ``retry_messages`` gracefully: no new ID is taken, the calls in
        flight finish and get their results, and the call returns the report with
        ``finished=False``. The input not taken yet is left in the iterator you passed."""
        if self._stopping is not None:
            self._stopping.set()

    async def retry_batch(self, batch_id: str, *, wait_unresolved: float = 0.0) -> BatchRetryReport:
        """Fire the batch retry only when it can succeed; say what was done, or why not.

        Reads the batch's messages in pages of 1000, just before firing. With a message still
        ``created`` it does not fire (that would flip the batch to
        ``messages_enqueuing_failed``) unless ``wait_unresolved`` > 0, in which case it polls
        with backoff until they resolve or the time is up. Failed messages at a count the
        server is known to refuse are reported as exhausted; a cap not yet learned does not
        stop it (the server's ``no_failed_batch_messages_to_retry`` teaches it). Raises
        :class:`ValidationError` for a bad ID and the fatal errors (auth, IP, budget).
        """
        report = await retry_batch(self.executor, batch_id, wait_unresolved)
        logger.info("%s", report.summary())
        return report

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
        GETs. Polling starts at ``poll_interval`` and backs off while nothing changes. In the
        load-test environment it also stops once the rest are pending at the aggregator,
        where they stay (they are left in ``pending``). Raises :class:`ValidationError` for a
        bad ID, ``TypeError`` for a single ``str`` where IDs are expected, and the fatal
        errors (auth, IP, budget).
        """
        _refuse_single_id("message_ids", message_ids)
        _refuse_single_id("batch_ids", batch_ids)
        ex, meter = self.executor.metered()
        started = ex.clock()
        report = await poll(ex, list(message_ids), list(batch_ids), timeout)
        report.calls = meter.calls
        report.elapsed = ex.clock() - started
        return report

    async def retry_until_settled(
        self,
        message_ids: Iterable[str] = (),
        *,
        batch_ids: Iterable[str] = (),
        timeout: float = 3600.0,
        max_rounds: int = 10,
        on_progress: SettleCallback | None = None,
    ) -> SettleReport:
        """Rounds of: wait for outcomes -> retry what failed and is worth retrying, until every
        message succeeded, used its attempts, failed with an error not worth retrying
        (``not_worth_retrying``), or the time is up.

        Batch messages are planned per batch: one batch-retry POST per round when it covers
        the failures worth retrying at no greater cost (the round's notes say why); it never
        fires while a message of the batch is ``created`` or unread since a POST, including at
        the deadline. Messages outside the given batches get single retries. ``on_progress``
        gets a :class:`SettleProgress` at each phase. In the load-test environment messages
        pending at the aggregator stay so: the run stops once only they are left (they are
        ``unsettled``) and its last round's notes say "load test: statuses stay pending".
        Raises :class:`ValidationError` for a bad ID, ``TypeError`` for a single ``str``
        where IDs are expected, and the fatal errors (auth, IP, budget).
        """
        _refuse_single_id("message_ids", message_ids)
        _refuse_single_id("batch_ids", batch_ids)
        report = await settle(
            self.executor, message_ids, batch_ids, timeout, max_rounds, on_progress
        )
        logger.info("settled: %s", report.summary())
        return report


def _refuse_single_id(name: str, ids: object) -> None:
    """``retry_messages("message_abc")`` would iterate the string and retry each character:
    refuse a bare ``str``/``bytes`` where an iterable of IDs is expected."""
    if isinstance(ids, (str, bytes, bytearray)):
        shown = repr(ids) if len(ids) <= 60 else f"{ids[:57]!r}..."
        raise TypeError(
            f"{name} takes an iterable of IDs, not a single {type(ids).__name__}: pass [{shown}]"
        )
