"""Single retries over many IDs: a bounded pool of workers pulling from any (async) iterable.

One call per message on the happy path (the retry POST's typed 400 tells eligibility), one
diagnostic read only for a refused one. Every distinct ID gets exactly one result.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import Any

import attrs

from ._executor import FATAL_ERRORS, Executor, aiter_any, run_workers
from .errors import (
    MessageNotRetryableError,
    NotFoundError,
    OutcomeUnknownError,
    PostmanError,
    TooManyAttemptsError,
    ValidationError,
)
from .models import Message, MessageStatus
from .planner import diagnose_skip
from .reports import MessageResult, MessageState, Outcome, RetryReport, describe_unknown
from .validation import validate_id

ProgressCallback = Callable[[RetryReport], None]


async def retry_each(
    ex: Executor,
    message_ids: Iterable[Any] | AsyncIterable[Any],
    report: RetryReport,
    *,
    known: Mapping[str, MessageState] | None = None,
    on_progress: ProgressCallback | None = None,
    stopping: asyncio.Event | None = None,
) -> RetryReport:
    """Retry each distinct ID once into ``report``. ``known``: the state last read per ID
    (status and attempts), which makes a lost answer exact to reconcile and teaches the cap.
    Once ``stopping`` is set, no new ID is taken; the calls in flight finish.

    A fatal error stops the run and is raised with the partial report as its ``report``."""
    started = ex.clock()
    source = aiter_any(message_ids)
    pull_lock = asyncio.Lock()
    known = known or {}

    async def next_id() -> tuple[str, Any] | None:
        async with pull_lock:
            if stopping is not None and stopping.is_set():
                return None
            async for raw in source:
                key = raw if isinstance(raw, str) else repr(raw)
                if report.claim(key):
                    return key, raw
            return None

    ex, meter = ex.metered()

    async def worker() -> None:
        while (item := await next_id()) is not None:
            key, raw = item
            posted = [False]
            try:
                result = await retry_one(_noting_posts(ex, posted), key, raw, known.get(key))
            except asyncio.CancelledError:
                report.record(_cancelled(key, posted=posted[0]))
                raise
            except FATAL_ERRORS as exc:
                report.record(MessageResult(key, Outcome.ERROR, str(exc), error=exc))
                raise
            report.record(result)
            report.calls = meter.calls
            if on_progress is not None:
                on_progress(report)

    try:
        await run_workers(worker, ex.concurrency)
    except BaseException as exc:
        exc.report = report  # type: ignore[attr-defined]
        raise
    finally:
        report.calls = meter.calls
        report.elapsed = ex.clock() - started
    report.finished = stopping is None or not stopping.is_set()
    return report


def _noting_posts(ex: Executor, posted: list[bool]) -> Executor:
    """``ex`` with a POST hook that sets ``posted[0]`` once a retry POST is about to be
    written (after its token), after any hook already in force."""
    outer = ex.client.call_options.before_post

    async def note() -> None:
        if outer is not None:
            await outer()
        posted[0] = True

    return attrs.evolve(ex, client=ex.client.with_options(before_post=note))


def _cancelled(key: str, *, posted: bool) -> MessageResult:
    if posted:
        return MessageResult(
            key,
            Outcome.CANCELLED,
            "cancelled in flight: the retry may or may not have been applied",
            applied=None,
        )
    return MessageResult(
        key, Outcome.CANCELLED, "cancelled before its retry POST was sent", applied=False
    )


async def retry_one(ex: Executor, key: str, raw: Any, known: MessageState | None) -> MessageResult:
    try:
        message_id = validate_id("message_id", raw)
    except ValidationError as exc:
        return MessageResult(key, Outcome.ERROR, str(exc), error=exc)
    attempts = known.attempts if known else None
    if attempts is not None and ex.cap.refuses(attempts):
        return MessageResult(key, Outcome.EXHAUSTED, f"exhausted: {ex.cap.describe()} (not sent)")
    try:
        await ex.pace()
        message = await ex.client.retry_message(
            message_id,
            attempts_before=attempts,
            status_before=known.status if known else None,
            priority=ex.priority,
        )
        confirmed = message.confirmed_by_readback
    except TooManyAttemptsError:
        if attempts is None and ex.cap.upper is None and ex.diagnose_skips:
            attempts = await _attempts_of(ex, message_id)
        if attempts is not None:
            ex.cap.learn_refused(attempts)
            return MessageResult(key, Outcome.EXHAUSTED, f"exhausted: {ex.cap.describe()}")
        return MessageResult(key, Outcome.EXHAUSTED, "exhausted: the server refused another")
    except MessageNotRetryableError:
        return await diagnose(ex, message_id)
    except OutcomeUnknownError as exc:
        return _unknown_result(ex, key, exc)
    except FATAL_ERRORS:
        raise
    except PostmanError as exc:
        return MessageResult(key, Outcome.ERROR, str(exc), error=exc)
    if attempts is not None:
        ex.cap.learn_accepted(attempts)
    detail = f"status {message.latest_status}"
    if confirmed:
        detail += " (answer lost; confirmed by read-back)"
    return MessageResult(
        key, Outcome.RETRIED, detail, message=message if ex.keep_messages else None
    )


async def _attempts_of(ex: Executor, message_id: str) -> int | None:
    """The first refusal for the cap teaches it, once: one read of the attempt count."""
    try:
        return (await ex.read_message(message_id)).attempts
    except FATAL_ERRORS:
        raise
    except PostmanError:
        return None


def _unknown_result(ex: Executor, key: str, exc: OutcomeUnknownError) -> MessageResult:
    """A retry whose answer was lost, as read back. Not applied and no longer in ``failure``:
    skipped. Not applied, still ``failure``, at a count the server's cap refuses: exhausted,
    decided without another POST (its lost answer was that refusal, or it never arrived: a
    second POST would be refused either way). Otherwise an error, ``applied`` as read."""
    observed = exc.observed
    if exc.applied is False and isinstance(observed, Message):
        if observed.latest_status != MessageStatus.FAILURE:
            return MessageResult(
                key,
                Outcome.NOT_IN_FAILURE,
                f"status {observed.latest_status} (read back after an ambiguous failure)",
            )
        count = observed.attempt_count
        if count is not None and ex.cap.refuses(count):
            return MessageResult(
                key,
                Outcome.EXHAUSTED,
                f"exhausted: {ex.cap.describe()}; {count} attempts read back after its answer "
                "was lost (not sent again)",
            )
    return MessageResult(key, Outcome.ERROR, describe_unknown(exc), error=exc, applied=exc.applied)


async def diagnose(ex: Executor, message_id: str) -> MessageResult:
    """The server said "not found or not in failure". One read tells which, and whether the
    message's batch status is what blocked it."""
    if not ex.diagnose_skips:
        return MessageResult(message_id, Outcome.NOT_IN_FAILURE, "not found or not failed")
    try:
        await ex.pace()
        message = await ex.client.get_message(message_id, priority=ex.priority)
    except NotFoundError:
        return MessageResult(message_id, Outcome.NOT_FOUND, "no such message")
    except FATAL_ERRORS:
        raise
    except PostmanError as exc:
        return MessageResult(message_id, Outcome.NOT_IN_FAILURE, f"not found or not failed ({exc})")
    outcome, detail = diagnose_skip(message)
    return MessageResult(message_id, outcome, detail)
