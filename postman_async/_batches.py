"""Batch retries: read the batch, fire only when the plan allows it, and take the server's
answer as authoritative (a lost answer is reconciled by reading the batch once)."""

from __future__ import annotations

from ._executor import FATAL_ERRORS, Executor
from .errors import (
    BatchNotRetryableError,
    NoFailedBatchMessagesError,
    NotFoundError,
    OutcomeUnknownError,
    PostmanError,
    UnresolvedBatchMessagesError,
)
from .planner import BatchPlan, learn_from_nothing_to_retry, plan_batch_retry
from .reports import BatchRetryReason, BatchRetryReport, MessageState
from .rules import is_unresolved, retry_took
from .validation import validate_id


async def retry_batch(ex: Executor, batch_id: str, wait_unresolved: float) -> BatchRetryReport:
    """Read the batch (1,000 messages a call); while a message is ``created``, wait up to
    ``wait_unresolved`` s with backoff; then fire if the plan allows it."""
    validate_id("batch_id", batch_id)
    report = BatchRetryReport(batch_id)
    started = ex.clock()
    ex, meter = ex.metered()
    try:
        await _read_and_fire(ex, batch_id, wait_unresolved, report)
    except FATAL_ERRORS:
        raise
    except PostmanError as exc:
        report.reason, report.error = BatchRetryReason.ERROR, exc
    finally:
        report.calls = meter.calls
        report.elapsed = ex.clock() - started
    return report


async def _read_and_fire(
    ex: Executor, batch_id: str, wait: float, report: BatchRetryReport
) -> None:
    try:
        states = await ex.read_batch(batch_id)
    except NotFoundError as exc:
        report.reason, report.error = BatchRetryReason.BATCH_STATUS, exc
        return
    deadline = ex.clock() + wait
    delay = ex.poll_interval
    while any(is_unresolved(s.status) for s in states) and ex.clock() < deadline:
        await ex.sleep(min(delay, max(0.0, deadline - ex.clock())))
        delay = min(delay * 1.5, ex.max_poll_interval)
        states = await ex.read_batch(batch_id)
    # Judged from the read just above: nothing but our own POST can make a message
    # ``created`` again between that read and the POST.
    plan = plan_batch_retry(batch_id, states, ex.cap)
    fill_report(report, plan, ex)
    if plan.fire:
        await fire(ex, plan, states, report)


def fill_report(report: BatchRetryReport, plan: BatchPlan, ex: Executor) -> None:
    report.messages = plan.messages
    report.reason = plan.reason
    report.batch_status = plan.batch_status
    report.retried_ids = list(plan.retried_ids) if plan.fire else []
    report.exhausted_ids = list(plan.exhausted_ids)
    report.unresolved_ids = list(plan.unresolved_ids)
    if plan.exhausted_ids or plan.reason is BatchRetryReason.NOTHING_TO_RETRY:
        report.detail = f"exhausted: {ex.cap.describe()}"


async def fire(
    ex: Executor, plan: BatchPlan, states: list[MessageState], report: BatchRetryReport
) -> None:
    """POST the batch retry that ``plan`` allows; the server's answer is authoritative."""
    try:
        await ex.pace()
        await ex.client.retry_batch(plan.batch_id, priority=ex.priority)
    except BatchNotRetryableError as exc:
        report.reason, report.error = BatchRetryReason.BATCH_STATUS, exc
    except UnresolvedBatchMessagesError as exc:
        report.reason, report.error = BatchRetryReason.UNRESOLVED, exc
    except NoFailedBatchMessagesError as exc:
        learn_from_nothing_to_retry(ex.cap, states)
        report.reason, report.error = BatchRetryReason.NOTHING_TO_RETRY, exc
        report.exhausted_ids = [*report.exhausted_ids, *report.retried_ids]
        report.detail = f"exhausted: {ex.cap.describe()}"
    except OutcomeUnknownError as exc:
        took = await _reconcile(ex, plan, states)
        report.reason = BatchRetryReason.FIRED if took else BatchRetryReason.OUTCOME_UNKNOWN
        report.fired, report.error = took, None if took else exc
        if took:
            report.detail = "answer lost; confirmed by read-back"
    except FATAL_ERRORS:
        raise
    except PostmanError as exc:  # e.g. still throttled after every HTTP retry
        report.reason, report.error = BatchRetryReason.ERROR, exc
    else:
        report.fired, report.reason = True, BatchRetryReason.FIRED
    if not report.fired:
        report.retried_ids = []


async def _reconcile(ex: Executor, plan: BatchPlan, states: list[MessageState]) -> bool:
    """A lost batch-retry answer: it took if any message it would retry gained an attempt or
    left ``failure``."""
    retried = set(plan.retried_ids)
    before = {s.message_id: s for s in states if s.message_id in retried}
    try:
        after = await ex.read_batch(plan.batch_id)
    except FATAL_ERRORS:
        raise
    except PostmanError:
        return False
    return any(
        retry_took(
            status_before=before[s.message_id].status,
            attempts_before=before[s.message_id].attempts,
            status_after=s.status,
            attempts_after=s.attempts,
        )
        for s in after
        if s.message_id in before
    )
