"""The settle loop: rounds of read -> plan -> retry, until nothing is left worth retrying.

Each round reads (``_polling``), asks the planner (``planner.plan_round``) and carries the plan
out: batch retries first, then single retries, with probes of an unlearned attempt cap sent one
at a time before the rest. All run state lives in a :class:`SettleRun`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import attrs

from . import rules, telemetry
from ._batches import fill_report, fire
from ._executor import Executor
from ._fanout import retry_each
from ._polling import poll
from .environments import LOAD_TEST_NOTE
from .models import MessageStatus
from .planner import (
    PageMap,
    RoundPlan,
    Watch,
    learn_from_batch_answer,
    next_watch,
    plan_round,
    still_in_doubt,
)
from .policy import CallMeter
from .reports import (
    BatchRetryReason,
    BatchRetryReport,
    Outcome,
    Phase,
    RetryReport,
    RoundReport,
    SettleProgress,
    SettleReport,
)

SettleCallback = Callable[[SettleProgress], None]
#: Batch-retry answers that may change by the next round: read the batch again.
_TRY_AGAIN = frozenset(
    {BatchRetryReason.UNRESOLVED, BatchRetryReason.OUTCOME_UNKNOWN, BatchRetryReason.ERROR}
)


@attrs.define
class SettleRun:
    """One ``retry_until_settled`` call's state."""

    ex: Executor
    batch_ids: list[str]
    deadline: float
    started: float
    on_progress: SettleCallback | None
    report: SettleReport = attrs.field(factory=SettleReport)
    #: messages POSTed to (or maybe) since they were last read: no batch retry fires on them
    stale: set[str] = attrs.field(factory=set)
    #: failed messages covered by a fired batch retry -> their attempts before it
    fired_before: dict[str, int] = attrs.field(factory=dict)
    #: each batch's listing pages, so a poll can read only the pages that hold pending ones
    page_maps: dict[str, PageMap] = attrs.field(factory=dict)
    calls: CallMeter = attrs.field(factory=CallMeter)

    def progress(self, phase: Phase, number: int) -> None:
        if self.on_progress is None:
            return
        states = self.report.states.values()
        self.on_progress(
            SettleProgress(
                phase=phase,
                round=number,
                messages=len(self.report.states),
                settled=sum(1 for s in states if rules.is_final(s.status, s.recipient)),
                delivered=self.report.delivered,
                failed=sum(1 for s in states if s.status == MessageStatus.FAILURE),
                calls=self.calls.calls,
                elapsed=self.ex.clock() - self.started,
            )
        )

    async def read(self, number: int, watch: Watch, round_report: RoundReport) -> list[str]:
        """This round's poll; returns the IDs still not final."""
        self.progress(Phase.READING, number)
        ex, reads = self.ex.metered()
        outcomes = await poll(
            ex,
            watch.singles,
            watch.batches,
            max(0.0, self.deadline - self.ex.clock()),
            # After a retry nothing can have resolved yet: don't read at once.
            initial_delay=0.0 if number == 1 else self.ex.poll_interval,
            batch_pending=watch.batch_pending,
            batch_sizes=watch.batch_sizes,
            page_maps=self.page_maps,
        )
        round_report.calls_reads = reads.calls
        self.report.states.update(outcomes.states)
        self.report.not_found.extend(m for m in outcomes.missing if m not in self.report.not_found)
        self.stale.difference_update(outcomes.states)
        read_back = {i: a for i, a in self.fired_before.items() if i in outcomes.states}
        learn_from_batch_answer(self.ex.cap, read_back, outcomes.states)
        for message_id in read_back:
            del self.fired_before[message_id]
        # Pending at the aggregator in a load test: they stay so; reading them again is waste.
        return [i for i in outcomes.pending if not self.ex.parked(self.report.states[i].status)]

    async def fire_batches(
        self, number: int, plan: RoundPlan, round_report: RoundReport
    ) -> tuple[list[str], list[str]]:
        """Fire the planned batch retries; returns (fired, to read again and reconsider)."""
        fired: list[str] = []
        held = [p.batch_id for p in plan.held_batches if p.reason is BatchRetryReason.UNRESOLVED]
        if plan.batch_retries:
            self.progress(Phase.RETRYING_BATCHES, number)
        ex, calls = self.ex.metered()
        for batch in plan.batch_retries:
            states = [s for s in self.report.states.values() if s.batch_id == batch.batch_id]
            report = BatchRetryReport(batch.batch_id)
            fill_report(report, batch, ex)
            await fire(ex, batch, states, report)
            if report.fired or report.reason is BatchRetryReason.OUTCOME_UNKNOWN:
                self.stale.update(batch.retried_ids)
            if report.fired:
                fired.append(batch.batch_id)
                round_report.batch_retries.append(batch.batch_id)
                by_id = self.report.states
                self.fired_before.update({i: by_id[i].attempts or 0 for i in batch.retried_ids})
                continue
            detail = f" ({report.detail})" if report.detail else ""
            round_report.notes.append(
                f"batch {batch.batch_id} not retried: {report.reason.value}{detail}"
            )
            if report.reason in _TRY_AGAIN:
                held.append(batch.batch_id)
        round_report.calls_batch_retries = calls.calls
        return fired, held

    async def retry_singles(
        self, number: int, plan: RoundPlan, round_report: RoundReport
    ) -> list[str]:
        """Probes one at a time, then the rest at full concurrency; returns the IDs POSTed to
        (or maybe), to read next round."""
        if not (plan.single_retries or plan.probes or plan.uncertain):
            return []
        self.progress(Phase.RETRYING_MESSAGES, number)
        known = self.report.states
        run = RetryReport()
        ex, calls = self.ex.metered()
        for probe in plan.probes:
            await retry_each(ex, [probe], run, known=known)
        rest, refused = still_in_doubt(plan.uncertain, known, ex.cap)
        await retry_each(ex, [*plan.single_retries, *rest], run, known=known)
        round_report.calls_single_retries = calls.calls
        round_report.single_retries = run.counts[Outcome.RETRIED]
        round_report.probes = len(plan.probes)
        round_report.exhausted += len(refused) + run.counts[Outcome.EXHAUSTED]
        # Ambiguous ones are read again next round, never re-POSTed blindly.
        touched = run.ids(Outcome.RETRIED, Outcome.ERROR, Outcome.CANCELLED)
        self.stale.update(touched)
        return touched


async def settle(
    ex: Executor,
    message_ids: Iterable[str],
    batch_ids: Iterable[str],
    timeout: float,
    max_rounds: int,
    on_progress: SettleCallback | None,
) -> SettleReport:
    started = ex.clock()
    batches = list(dict.fromkeys(batch_ids))
    ex, total = ex.metered()
    run = SettleRun(ex, batches, started + timeout, started, on_progress, calls=total)
    report = run.report
    watch = Watch(tuple(batches), tuple(dict.fromkeys(message_ids)), {}, {})
    with telemetry.run_span("postman.settle") as span:
        for number in range(1, max_rounds + 1):
            round_report = RoundReport(number)
            report.rounds.append(round_report)
            with telemetry.run_span("postman.settle.round", **{"postman.round": number}):
                pending = await run.read(number, watch, round_report)
                plan = plan_round(report.states, run.batch_ids, ex.cap, ex.not_worth, run.stale)
                round_report.failed = plan.failed
                round_report.exhausted = plan.exhausted
                round_report.not_worth_retrying = plan.not_worth_retrying
                round_report.notes.extend(plan.notes)
                fired, held = await run.fire_batches(number, plan, round_report)
                touched = await run.retry_singles(number, plan, round_report)
            watch = next_watch(report.states, fired, held, touched, pending, ex.cap)
            if (not watch.batches and not watch.singles) or ex.clock() >= run.deadline:
                break
        report.calls = total.calls
        if span is not None:
            span.set_attribute("postman.rounds", len(report.rounds))
            span.set_attribute("postman.messages", len(report.states))
            span.set_attribute("postman.calls", report.calls)
    states = report.states
    report.unsettled = [i for i, s in states.items() if not rules.is_final(s.status, s.recipient)]
    report.exhausted = [
        i
        for i, s in states.items()
        if s.status == MessageStatus.FAILURE and ex.cap.refuses(s.attempts or 0)
    ]
    report.attempt_cap = ex.cap.describe()
    report.elapsed = ex.clock() - started
    parked = sum(1 for i in report.unsettled if ex.parked(states[i].status))
    if parked and report.rounds:
        report.rounds[-1].notes.append(
            f"{LOAD_TEST_NOTE}: {parked} messages pending at the aggregator, where they stay"
        )
    run.progress(Phase.DONE, len(report.rounds))
    return report
