"""Polling for outcomes (there are no webhooks): each poll reads whichever costs fewer calls,
a batch's listing or GETs of its pending messages, and backs off while nothing changes."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

import attrs

from ._executor import FATAL_ERRORS, Executor
from .environments import LOAD_TEST_NOTE
from .errors import NotFoundError, PostmanError
from .models import MessageStatus
from .planner import PageMap, is_settled, plan_batch_read
from .reports import MessageState, OutcomesReport
from .validation import validate_id

logger = logging.getLogger("postman_async")


@attrs.define
class _PollRun:
    """One poll loop's state."""

    ex: Executor
    report: OutcomesReport = attrs.field(factory=OutcomesReport)
    page_maps: dict[str, PageMap] = attrs.field(factory=dict)
    telco_since: dict[str, float] = attrs.field(factory=dict)
    changed: bool = False

    def settled(self, state: MessageState) -> bool:
        """Final, or pending for good (at the aggregator, in a load test)."""
        if self.ex.parked(state.status):
            return True
        now = self.ex.clock()
        since = None
        if state.status == MessageStatus.SENT_TO_TELCO:
            since = self.telco_since.setdefault(state.message_id, now)
        return is_settled(state, since, now, self.ex.telco_final_after)

    def finish(self) -> OutcomesReport:
        """The report: ``pending`` holds what is not final, those parked at the aggregator
        (in a load test) included."""
        report = self.report
        parked = [i for i, s in report.states.items() if self.ex.parked(s.status)]
        report.pending = [i for i, s in report.states.items() if not self.settled(s)] + parked
        if parked:
            logger.info("%s: %d messages pending at the aggregator", LOAD_TEST_NOTE, len(parked))
        return report

    def take(self, state: MessageState) -> bool:
        """Record a state read; True when it is final."""
        self.changed |= self.report.states.get(state.message_id) != state
        self.report.states[state.message_id] = state
        return self.settled(state)


async def poll(
    ex: Executor,
    message_ids: Collection[str],
    batch_ids: Collection[str],
    timeout: float,
    *,
    initial_delay: float = 0.0,
    batch_pending: Mapping[str, Collection[str]] | None = None,
    batch_sizes: Mapping[str, int] | None = None,
    page_maps: dict[str, PageMap] | None = None,
) -> OutcomesReport:
    """Poll until every message is final or ``timeout`` s pass; in the load-test environment,
    also once the rest are pending at the aggregator, where they stay (they are left in
    ``pending``, and a log line says "load test: statuses stay pending").

    ``batch_pending`` (per batch, the messages still expected to change), ``batch_sizes`` and
    ``page_maps`` (kept and updated across calls) let a poll read by GETs, or only the pages
    that hold pending messages, when that costs fewer calls than the whole listing."""
    for message_id in message_ids:
        validate_id("message_id", message_id)
    for batch_id in batch_ids:
        validate_id("batch_id", batch_id)
    run = _PollRun(ex, page_maps=page_maps if page_maps is not None else {})
    deadline = ex.clock() + timeout
    pending: dict[str, set[str] | None] = {
        b: (set(batch_pending[b]) if batch_pending and b in batch_pending else None)
        for b in dict.fromkeys(batch_ids)
    }
    sizes = dict(batch_sizes or {})
    singles: list[str] | None = None
    delay = ex.poll_interval
    if initial_delay > 0:
        await ex.sleep(min(initial_delay, max(0.0, deadline - ex.clock())))
    while True:
        run.changed = False
        for batch_id, waiting in list(pending.items()):
            still = await _poll_batch(run, batch_id, waiting, sizes)
            if still is None:
                continue  # the read failed: next poll
            if still:
                pending[batch_id] = still
            else:
                del pending[batch_id]
        if singles is None:  # after the first batch read: the rest need GETs
            singles = [i for i in dict.fromkeys(message_ids) if i not in run.report.states]
        for state in await read_messages(ex, singles, None, run.report):
            if run.take(state):
                singles.remove(state.message_id)
        remaining = deadline - ex.clock()
        if (not pending and not singles) or remaining <= 0:
            break
        if not run.changed:
            delay = min(delay * 1.5, ex.max_poll_interval)
        await ex.sleep(min(delay, remaining))
    return run.finish()


async def _poll_batch(
    run: _PollRun, batch_id: str, waiting: set[str] | None, sizes: dict[str, int]
) -> set[str] | None:
    """One poll of one batch; the messages still not final, or None if the read failed."""
    plan = plan_batch_read(waiting, sizes.get(batch_id), run.page_maps.get(batch_id))
    if plan.gets:
        assert waiting is not None
        states = await read_messages(run.ex, waiting, batch_id, run.report)
    else:
        try:
            if plan.pages:
                states = await run.ex.read_pages(batch_id, plan.pages)
            else:
                states, page_map = await run.ex.scan_batch(batch_id, run.settled)
                if page_map is None:  # the rest has not moved on yet: read it next poll
                    return {s.message_id for s in states if not run.take(s)}
                run.page_maps[batch_id] = page_map
                sizes[batch_id] = len(states)
                waiting = set()
        except FATAL_ERRORS:
            raise
        except NotFoundError:  # no such batch: nothing to wait for, now or later
            run.report.missing.append(batch_id)
            logger.warning("batch %s not found", batch_id)
            return set()
        except PostmanError as exc:
            run.report.read_errors += 1
            logger.warning("reading batch %s failed (%s); next poll", batch_id, exc)
            return None
    assert waiting is not None
    for state in states:
        if run.take(state):
            waiting.discard(state.message_id)
        else:
            waiting.add(state.message_id)
    return waiting


async def read_messages(
    ex: Executor, message_ids: Collection[str], batch_id: str | None, report: OutcomesReport
) -> list[MessageState]:
    """GET each message; a missing one is recorded and dropped from ``message_ids``."""
    states = []
    for message_id in list(message_ids):
        try:
            states.append(await ex.read_message(message_id, batch_id))
        except NotFoundError:
            report.missing.append(message_id)
            if isinstance(message_ids, (list, set)):
                message_ids.remove(message_id)
        except FATAL_ERRORS:
            raise
        except PostmanError as exc:
            report.read_errors += 1
            logger.warning("reading %s failed (%s); next poll", message_id, exc)
    return states
