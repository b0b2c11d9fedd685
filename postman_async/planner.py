"""The orchestrator's pure core: from states read to plans. No I/O, no clock, no sleeps.

The executors (``_fanout``, ``_polling``, ``_settle``, ``_batches``) carry the plans out and
feed what they read back in. Every rule comes from :mod:`postman_async.rules`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

import attrs

from . import rules
from .models import BatchStatus, Message, MessageStatus
from .reports import BatchRetryReason, MessageState, Outcome
from .rules import AttemptCap, BatchVerdict

LISTING_PAGE = 1000  # messages per batch-listing call (§2.4: limit 1..1000)


# -- a 400 "not found or not in failure" --------------------------------------------------


def diagnose_skip(message: Message) -> tuple[Outcome, str]:
    """Why the server refused a single retry, from one read of the message: not in failure, or
    in failure but held by its batch's status."""
    batch = message.batch
    failed = message.latest_status == MessageStatus.FAILURE
    if failed and batch is not None and rules.batch_allows_retry(batch.status) is not True:
        return Outcome.BATCH_BLOCKED, f"batch {batch.id} is {batch.status}"
    return Outcome.NOT_IN_FAILURE, f"status {message.latest_status}"


# -- batch retries -------------------------------------------------------------------------


@attrs.frozen
class BatchPlan:
    """Whether a batch retry may fire, judged from the batch's states as last read."""

    batch_id: str
    verdict: BatchVerdict
    messages: int
    retried_ids: tuple[str, ...]  # failed, not known to be out of attempts
    exhausted_ids: tuple[str, ...]  # failed, known to be out of attempts
    unresolved_ids: tuple[str, ...]  # still ``created``: firing would flip the batch
    batch_status: str | None = None

    @property
    def fire(self) -> bool:
        return self.verdict is BatchVerdict.RETRYABLE

    @property
    def reason(self) -> BatchRetryReason:
        if self.fire:
            return BatchRetryReason.FIRED
        return BatchRetryReason(self.verdict.value)


def plan_batch_retry(
    batch_id: str,
    states: Iterable[MessageState],
    cap: AttemptCap | None,
    batch_status: BatchStatus | None = None,
) -> BatchPlan:
    """Fire only when nothing is ``created`` and some failure is not known to be exhausted.

    ``batch_status`` is used when the caller has a fresh one. The executors do not spend a GET
    on it: listings do not carry it, and the GET would cost the one call that the harmless
    ``batch_not_found_or_is_not_retryable`` 400 costs, while a stale status could hold a batch
    that has since become retryable.
    """
    states = list(states)
    status = batch_status
    failed = [s for s in states if s.status == MessageStatus.FAILURE]
    refused = {s.message_id for s in failed if cap and cap.refuses(s.attempts or 0)}
    verdict = rules.batch_retry_verdict(status, ((s.status, s.attempts) for s in states), cap=cap)
    if not states:
        verdict = BatchVerdict.NOT_RETRYABLE
    return BatchPlan(
        batch_id=batch_id,
        verdict=verdict,
        messages=len(states),
        retried_ids=tuple(s.message_id for s in failed if s.message_id not in refused),
        exhausted_ids=tuple(s.message_id for s in failed if s.message_id in refused),
        unresolved_ids=tuple(s.message_id for s in states if rules.is_unresolved(s.status)),
        batch_status=status.value if status is not None else None,
    )


def learn_from_batch_answer(
    cap: AttemptCap, fired: Mapping[str, int], after: Mapping[str, MessageState]
) -> None:
    """After a batch retry: a failed message (``fired``: ID -> attempts before) that gained an
    attempt was under the cap; one still in failure with the same count was at it."""
    for message_id, before in fired.items():
        state = after.get(message_id)
        if state is None or state.attempts is None:
            continue
        if state.attempts > before:
            cap.learn_accepted(before)
        elif state.status == MessageStatus.FAILURE:
            cap.learn_refused(before)


def learn_from_nothing_to_retry(cap: AttemptCap, states: Iterable[MessageState]) -> None:
    """``no_failed_batch_messages_to_retry`` with nothing ``created``: every failed message
    is at the cap, so the cap is at most the smallest failed count."""
    counts = [s.attempts for s in states if s.status == MessageStatus.FAILURE and s.attempts]
    if counts:
        cap.learn_refused(min(counts))


# -- polling --------------------------------------------------------------------------------


#: A batch listing's pages as last read: the ``after`` cursor that fetches each page (None:
#: the first) and the IDs it held. A batch's messages keep their ``createdAt``, so the pages
#: stay as they are and one page can be read again on its own.
PageMap = list[tuple[str | None, frozenset[str]]]


@attrs.frozen
class BatchRead:
    """How one poll reads a batch: GETs of some messages, some pages by cursor, or (neither)
    the whole listing."""

    gets: tuple[str, ...] = ()
    pages: tuple[str | None, ...] = ()

    @property
    def whole(self) -> bool:
        return not self.gets and not self.pages


def plan_batch_read(
    waiting: Collection[str] | None, size: int | None, page_map: PageMap | None = None
) -> BatchRead:
    """The cheapest read of a batch whose pending messages are ``waiting`` (None: unknown):
    GETs of them (1 call each), the pages that hold them (1 call each), or the whole listing
    (1 call per 1,000 messages)."""
    if waiting is None or (size is None and not page_map):
        return BatchRead()
    listing = len(page_map) if page_map else -(-(size or 0) // LISTING_PAGE)
    if page_map:
        pages = [cursor for cursor, ids in page_map if not ids.isdisjoint(waiting)]
        if len(pages) < min(len(waiting), listing):
            return BatchRead(pages=tuple(pages))
    if len(waiting) < listing:
        return BatchRead(gets=tuple(sorted(waiting)))
    return BatchRead()


def is_settled(
    state: MessageState, telco_since: float | None, now: float, telco_final_after: float
) -> bool:
    """Final by the rules; a foreign ``sent_to_telco`` only after ``telco_final_after`` s."""
    if state.status == MessageStatus.SENT_TO_TELCO and rules.is_final(
        state.status, state.recipient
    ):
        return telco_since is not None and now - telco_since >= telco_final_after
    return rules.is_final(state.status, state.recipient)


# -- settle rounds --------------------------------------------------------------------------


@attrs.frozen
class RoundPlan:
    """One settle round: batch-retry POSTs, single retries (sure ones, and probes of a cap not
    yet learned, sent one at a time before the rest), and why."""

    batch_retries: tuple[BatchPlan, ...] = ()
    single_retries: tuple[str, ...] = ()
    probes: tuple[str, ...] = ()
    uncertain: tuple[str, ...] = ()
    held_batches: tuple[BatchPlan, ...] = ()
    failed: int = 0
    exhausted: int = 0
    not_worth_retrying: int = 0
    notes: tuple[str, ...] = ()


def plan_round(
    states: Mapping[str, MessageState],
    batch_ids: Collection[str],
    cap: AttemptCap,
    not_worth: Collection[str] = rules.NOT_WORTH_RETRYING,
    stale: Collection[str] = (),
) -> RoundPlan:
    """Which batches get one batch-retry POST, and which IDs get single retries.

    A batch retry retries every failed message with attempts left, so it is planned only when
    it covers the failures worth retrying at no greater cost than single retries. It fires only
    if nothing in the batch is ``created`` and no message was POSTed to since it was last read
    (``stale``): the decision rests on the freshest read.
    """
    failures = _Failures.of(states, cap, not_worth)
    notes: list[str] = []
    if failures.exhausted:
        notes.append(f"{failures.exhausted} exhausted: {cap.describe()}")
    singles = list(failures.worthy.pop(None, []))
    fire: list[BatchPlan] = []
    held: list[BatchPlan] = []
    for batch_id, ids in failures.worthy.items():
        assert batch_id is not None  # messages outside any batch were popped above
        extra = failures.unworthy.get(batch_id, [])
        if batch_id not in batch_ids or (extra and len(ids) == 1):
            singles.extend(ids)
            if batch_id in batch_ids:
                notes.append(
                    f"batch {batch_id}: 1 single retry, so the batch retry does not also retry "
                    f"{len(extra)} message(s) not worth retrying"
                )
            continue
        plan, note = _gate_batch(batch_id, len(ids), len(extra), states, cap, stale)
        notes += [note] if note else []
        (fire if plan.fire else held).append(plan)
    sure, probes, uncertain = split_by_cap(singles, states, cap)
    return RoundPlan(
        batch_retries=tuple(fire),
        single_retries=tuple(sure),
        probes=tuple(probes),
        uncertain=tuple(uncertain),
        held_batches=tuple(held),
        failed=failures.failed,
        exhausted=failures.exhausted,
        not_worth_retrying=failures.not_worth,
        notes=tuple(notes),
    )


@attrs.define
class _Failures:
    """The failed messages of a round, by batch: worth retrying, or not; and the counts."""

    worthy: dict[str | None, list[str]] = attrs.field(factory=dict)
    unworthy: dict[str | None, list[str]] = attrs.field(factory=dict)
    failed: int = 0
    exhausted: int = 0
    not_worth: int = 0

    @classmethod
    def of(
        cls, states: Mapping[str, MessageState], cap: AttemptCap, not_worth: Collection[str]
    ) -> _Failures:
        out = cls()
        for state in states.values():
            if state.status != MessageStatus.FAILURE:
                continue
            out.failed += 1
            if cap.refuses(state.attempts or 0):
                out.exhausted += 1
            elif not rules.worth_retrying(state.error_code, not_worth):
                out.not_worth += 1
                out.unworthy.setdefault(state.batch_id, []).append(state.message_id)
            else:
                out.worthy.setdefault(state.batch_id, []).append(state.message_id)
        return out


def _gate_batch(
    batch_id: str,
    worthy: int,
    unworthy: int,
    states: Mapping[str, MessageState],
    cap: AttemptCap,
    stale: Collection[str],
) -> tuple[BatchPlan, str | None]:
    """The batch's plan, held while a message is unread since a POST; and a note on it."""
    members = [s for s in states.values() if s.batch_id == batch_id]
    plan = plan_batch_retry(batch_id, members, cap)
    if stale and any(s.message_id in stale for s in members):
        held = attrs.evolve(plan, verdict=BatchVerdict.UNRESOLVED)
        return held, f"batch {batch_id}: not retried: a message is unread since a POST"
    if not plan.fire:
        return plan, f"batch {batch_id} not retried: {plan.verdict.value}"
    if unworthy:
        return plan, (
            f"batch {batch_id}: one batch retry (1 call) instead of {worthy} single "
            f"retries; it also retries {unworthy} message(s) not worth retrying"
        )
    return plan, None


def split_by_cap(
    ids: Iterable[str], states: Mapping[str, MessageState], cap: AttemptCap
) -> tuple[list[str], list[str], list[str]]:
    """(known to have attempts left, one probe per attempt count in doubt, the rest in doubt).
    Probes go first and one at a time: each answer teaches the cap before the rest are sent."""
    sure: list[str] = []
    probes: dict[int, str] = {}
    uncertain: list[str] = []
    for message_id in ids:
        attempts = states[message_id].attempts if message_id in states else None
        if attempts is None or cap.allows(attempts):
            sure.append(message_id)
        elif attempts not in probes:
            probes[attempts] = message_id
        else:
            uncertain.append(message_id)
    return sure, [probes[a] for a in sorted(probes)], uncertain


def still_in_doubt(
    ids: Iterable[str], states: Mapping[str, MessageState], cap: AttemptCap
) -> tuple[list[str], list[str]]:
    """After the probes: (to send, now known to be exhausted)."""
    send: list[str] = []
    refused: list[str] = []
    for message_id in ids:
        attempts = states[message_id].attempts or 0
        (refused if cap.refuses(attempts) else send).append(message_id)
    return send, refused


@attrs.frozen
class Watch:
    """What the next settle round reads: whole batches, and single messages by GET."""

    batches: tuple[str, ...]
    singles: tuple[str, ...]
    batch_pending: Mapping[str, frozenset[str]]
    batch_sizes: Mapping[str, int]


def next_watch(
    states: Mapping[str, MessageState],
    fired: Collection[str],
    held: Collection[str],
    touched: Iterable[str],
    pending: Iterable[str],
    cap: AttemptCap,
) -> Watch:
    """After a round: read again the batches retried or held, and by GET the messages whose
    retry was sent (or may have been) and those not yet final outside those batches."""
    covered = [*fired, *held]
    covered_set = set(covered)
    sizes: dict[str, int] = {}
    for state in states.values():
        if state.batch_id in covered_set:
            sizes[state.batch_id] = sizes.get(state.batch_id, 0) + 1
    batch_pending = {
        b: frozenset(
            s.message_id
            for s in states.values()
            if s.batch_id == b
            and s.status == MessageStatus.FAILURE
            and not cap.refuses(s.attempts or 0)
        )
        for b in fired
    }
    singles = tuple(
        i
        for i in dict.fromkeys([*touched, *pending])
        if i not in states or states[i].batch_id not in covered_set
    )
    return Watch(tuple(covered), singles, batch_pending, sizes)
