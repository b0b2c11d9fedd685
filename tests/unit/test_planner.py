"""The pure planning core, by tables: states in, plans out. No simulator, no sleeps."""

from __future__ import annotations

from typing import Any

import pytest

from postman_async import (
    BatchStatus,
    Message,
    MessageStatus,
    Outcome,
    PostmanClient,
    RetryOrchestrator,
    environments,
    planner,
    rules,
)
from postman_async.converter import decode
from postman_async.reports import MessageState
from postman_async.rules import AttemptCap, BatchVerdict

F, S, C = MessageStatus.FAILURE, MessageStatus.SUCCESS, MessageStatus.CREATED


def st(
    message_id: str,
    status: MessageStatus,
    attempts: int = 1,
    error: str | None = "recipient_unavailable",
    batch: str | None = "batch_a",
    recipient: str = "6591234567",
) -> MessageState:
    return MessageState(
        message_id, status, attempts, error if status == F else None, recipient, batch
    )


def states(*items: MessageState) -> dict[str, MessageState]:
    return {s.message_id: s for s in items}


# -- settle rounds ------------------------------------------------------------------------

ROUNDS = [
    # (case, states, batch_ids, stale, batch retries, singles, probes, notes contain)
    (
        "worthy failures of a batch: one batch retry",
        states(st("a", F), st("b", F), st("c", S)),
        ["batch_a"], set(), ["batch_a"], [], [], [],
    ),
    (
        "one worthy among unworthy: a single retry, and the note says why",
        states(
            st("a", F), st("b", F, error="recipient_invalid"), st("c", F, error="content_invalid")
        ),
        ["batch_a"], set(), [], ["a"], [], ["1 single retry"],
    ),
    (
        "two worthy and an unworthy: one batch retry, which also retries the unworthy",
        states(st("a", F), st("b", F), st("c", F, error="recipient_invalid")),
        ["batch_a"], set(), ["batch_a"], [], [], ["also retries 1 message(s) not worth"],
    ),
    (
        "a message still created: the batch is held (no flip), whatever the deadline",
        states(st("a", F), st("b", C)),
        ["batch_a"], set(), [], [], [], ["unresolved_batch_messages"],
    ),
    (
        "a message POSTed to and not read since: held until read",
        states(st("a", F), st("b", F)),
        ["batch_a"], {"b"}, [], [], [], ["unread since a POST"],
    ),
    (
        "messages outside any batch, and of batches not being settled: single retries",
        states(st("a", F, batch=None), st("b", F, batch="batch_other")),
        ["batch_a"], set(), [], ["a", "b"], [], [],
    ),
    (
        "a cap not yet learned: one probe per attempt count in doubt, sent first",
        states(
            st("a", F, 3, batch=None), st("b", F, 3, batch=None),
            st("c", F, 4, batch=None), st("d", F, 2, batch=None),
        ),
        [], set(), [], ["d"], ["a", "c"], [],
    ),
    (
        "a failure at 3 attempts in a batch: the batch retry is the probe (never refused "
        "on an assumption)",
        states(st("a", F, 3)),
        ["batch_a"], set(), ["batch_a"], [], [], [],
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "state_map", "batch_ids", "stale", "batches", "singles", "probes", "notes"),
    ROUNDS,
    ids=[r[0] for r in ROUNDS],
)
def test_plan_round(
    case: str,
    state_map: dict[str, MessageState],
    batch_ids: list[str],
    stale: set[str],
    batches: list[str],
    singles: list[str],
    probes: list[str],
    notes: list[str],
) -> None:
    plan = planner.plan_round(state_map, batch_ids, AttemptCap(), stale=stale)
    assert [b.batch_id for b in plan.batch_retries] == batches
    assert sorted(plan.single_retries) == sorted(singles)
    assert list(plan.probes) == probes
    for note in notes:
        assert any(note in n for n in plan.notes), plan.notes
    for batch in plan.batch_retries:  # the gate: never a created message in a fired batch
        members = [s for s in state_map.values() if s.batch_id == batch.batch_id]
        assert not any(rules.is_unresolved(s.status) for s in members)


def test_plan_round_with_a_learned_cap_counts_exhausted_and_sends_nothing_for_them() -> None:
    cap = AttemptCap()
    cap.learn_refused(3)
    plan = planner.plan_round(
        states(st("a", F, 3), st("b", F, 3, batch=None), st("c", F, 2, batch=None)),
        ["batch_a"],
        cap,
    )
    assert plan.batch_retries == () and plan.single_retries == ("c",) and plan.probes == ()
    assert plan.exhausted == 2 and plan.failed == 3
    assert "2 exhausted: the server's cap is 3 attempts" in plan.notes


def test_after_probes_the_rest_are_sent_or_known_exhausted() -> None:
    state_map = states(*(st(i, F, 3, batch=None) for i in "abc"))
    sure, probes, doubt = planner.split_by_cap(state_map, state_map, AttemptCap())
    assert (sure, probes, doubt) == ([], ["a"], ["b", "c"])
    refused = AttemptCap()
    refused.learn_refused(3)  # the probe was refused
    assert planner.still_in_doubt(doubt, state_map, refused) == ([], ["b", "c"])
    accepted = AttemptCap()
    accepted.learn_accepted(3)  # the probe was taken: cap 4
    assert planner.still_in_doubt(doubt, state_map, accepted) == (["b", "c"], [])


# -- batch retries ------------------------------------------------------------------------

BATCHES = [
    # (case, states, batch status, cap, verdict)
    (
        "resolved with a failure",
        [st("a", F), st("b", S)], None, AttemptCap(), BatchVerdict.RETRYABLE,
    ),
    ("a created message", [st("a", F), st("b", C)], None, AttemptCap(), BatchVerdict.UNRESOLVED),
    (
        "status unknown (absent): fire if nothing is created",
        [st("a", F)], None, AttemptCap(), BatchVerdict.RETRYABLE,
    ),
    (
        "status a value the docs do not name: fire if nothing is created",
        [st("a", F)], BatchStatus("paused"), AttemptCap(), BatchVerdict.RETRYABLE,
    ),
    (
        "status unknown and a created message: never",
        [st("a", F), st("b", C)], BatchStatus("paused"), AttemptCap(), BatchVerdict.UNRESOLVED,
    ),
    (
        "a known status that forbids it",
        [st("a", F)], BatchStatus.MESSAGES_ENQUEUING, AttemptCap(), BatchVerdict.NOT_RETRYABLE,
    ),
    ("all succeeded", [st("a", S)], None, AttemptCap(), BatchVerdict.NOTHING_TO_RETRY),
    (
        "failures at the learned cap",
        [st("a", F, 3)], None, AttemptCap.known(3), BatchVerdict.NOTHING_TO_RETRY,
    ),
    ("failures at 3, cap not learned", [st("a", F, 3)], None, AttemptCap(), BatchVerdict.RETRYABLE),
    ("nothing read", [], None, AttemptCap(), BatchVerdict.NOT_RETRYABLE),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "members", "status", "cap", "verdict"), BATCHES, ids=[b[0] for b in BATCHES]
)
def test_plan_batch_retry(
    case: str,
    members: list[MessageState],
    status: BatchStatus | None,
    cap: AttemptCap,
    verdict: BatchVerdict,
) -> None:
    plan = planner.plan_batch_retry("batch_a", members, cap, status)
    assert plan.verdict is verdict
    assert plan.fire is (verdict is BatchVerdict.RETRYABLE)


def test_batch_plan_lists_retried_exhausted_and_unresolved() -> None:
    cap = AttemptCap.known(3)
    plan = planner.plan_batch_retry(
        "batch_a", [st("a", F, 1), st("b", F, 3), st("c", S), st("d", C)], cap
    )
    assert (plan.retried_ids, plan.exhausted_ids, plan.unresolved_ids) == (("a",), ("b",), ("d",))


# -- the attempt cap ----------------------------------------------------------------------


def test_the_cap_is_learned_from_answers() -> None:
    cap = AttemptCap()
    assert cap.value is None and cap.allows(2) and not cap.allows(3) and not cap.refuses(3)
    cap.learn_accepted(3)  # a retry at 3 attempts was taken: the cap is at least 4
    assert cap.allows(3) and cap.value is None
    cap.learn_refused(4)
    assert cap.value == 4 and cap.refuses(4) and cap.describe() == "the server's cap is 4 attempts"
    three = AttemptCap()
    planner.learn_from_nothing_to_retry(three, [st("a", F, 3), st("b", F, 5), st("c", S)])
    assert three.value == 3
    after_batch = AttemptCap()
    planner.learn_from_batch_answer(
        after_batch, {"a": 3, "b": 3}, states(st("a", F, 3), st("b", F, 3))
    )
    assert after_batch.value == 3  # neither gained an attempt: refused at 3
    gained = AttemptCap()
    planner.learn_from_batch_answer(gained, {"a": 3}, states(st("a", C, 4)))
    assert gained.allows(3) and gained.value is None


# -- lost answers -------------------------------------------------------------------------

LOST = [
    # (case, status before, attempts before, status after, attempts after, took)
    ("gained an attempt", F, 2, F, 3, True),
    ("left failure (read-back without counts)", F, None, MessageStatus.ENQUEUED, None, True),
    ("left failure with the same count", F, 2, S, 2, True),
    ("same count, still failure", F, 2, F, 2, False),
    ("same count, status before unknown", None, 2, S, 2, False),
    ("nothing to compare", None, None, S, None, None),
    ("still failure, no counts", F, None, F, None, None),
]  # fmt: skip


@pytest.mark.parametrize(("case", "sb", "ab", "sa", "aa", "took"), LOST, ids=[r[0] for r in LOST])
def test_retry_took(
    case: str,
    sb: MessageStatus | None,
    ab: int | None,
    sa: MessageStatus | None,
    aa: int | None,
    took: bool | None,
) -> None:
    assert (
        rules.retry_took(status_before=sb, attempts_before=ab, status_after=sa, attempts_after=aa)
        is took
    )


# -- polling and diagnosis ----------------------------------------------------------------


PAGES = [(None, frozenset({"a", "b"})), ("c1", frozenset({"c", "d"})), ("c2", frozenset({"e"}))]
READS = [
    # (case, waiting, size, page map, gets, pages)
    ("nothing known: the whole listing", None, None, None, (), ()),
    ("one pending of 2,500: a GET", {"a"}, 2500, None, ("a",), ()),
    ("three pending of 2,500: the listing (3 pages)", {"a", "b", "c"}, 2500, None, (), ()),
    ("pending on one page of three: that page", {"c", "d"}, 5, PAGES, (), ("c1",)),
    ("pending on every page: the listing", {"a", "c", "e"}, 5, PAGES, (), ()),
    ("one pending with a page map: a GET", {"e"}, 5, PAGES, ("e",), ()),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "waiting", "size", "page_map", "gets", "pages"), READS, ids=[r[0] for r in READS]
)
def test_plan_batch_read(
    case: str,
    waiting: set[str] | None,
    size: int | None,
    page_map: planner.PageMap | None,
    gets: tuple[str, ...],
    pages: tuple[str | None, ...],
) -> None:
    read = planner.plan_batch_read(waiting, size, page_map)
    assert (read.gets, read.pages) == (gets, pages)
    assert read.whole is (not gets and not pages)


def test_is_settled_waits_for_telco_abroad_only() -> None:
    abroad = st("a", MessageStatus.SENT_TO_TELCO, recipient="447911123456")
    local = st("b", MessageStatus.SENT_TO_TELCO)
    assert planner.is_settled(abroad, telco_since=0.0, now=5.0, telco_final_after=0.0)
    assert not planner.is_settled(abroad, telco_since=0.0, now=5.0, telco_final_after=10.0)
    assert not planner.is_settled(local, telco_since=0.0, now=99.0, telco_final_after=0.0)
    assert planner.is_settled(st("c", S), telco_since=None, now=0.0, telco_final_after=9.0)


def _message(status: str, batch_status: str | None) -> Message:
    payload: dict[str, object] = {"id": "m", "latestStatus": status}
    if batch_status is not None:
        payload["batches"] = [{"id": "batch_a", "status": batch_status}]
    return decode(Message, payload)


@pytest.mark.parametrize(
    ("status", "batch_status", "outcome"),
    [
        ("success", None, Outcome.NOT_IN_FAILURE),
        ("failure", "messages_enqueuing", Outcome.BATCH_BLOCKED),
        ("failure", "paused", Outcome.BATCH_BLOCKED),
        ("failure", "messages_enqueued", Outcome.NOT_IN_FAILURE),
        ("created", "messages_enqueuing", Outcome.NOT_IN_FAILURE),
    ],
)
def test_diagnose_skip(status: str, batch_status: str | None, outcome: Outcome) -> None:
    assert planner.diagnose_skip(_message(status, batch_status))[0] is outcome


def test_next_watch_reads_fired_batches_by_their_pending_failures() -> None:
    state_map = states(
        st("a", F), st("b", S), st("c", F, 3), st("x", F, batch=None), st("y", S, batch=None)
    )
    cap = AttemptCap.known(3)
    watch = planner.next_watch(state_map, ["batch_a"], [], touched=["x"], pending=["y"], cap=cap)
    assert watch.batches == ("batch_a",) and watch.batch_sizes == {"batch_a": 3}
    assert watch.batch_pending == {"batch_a": frozenset({"a"})}
    assert watch.singles == ("x", "y")


# -- the entry points that take IDs refuse a single str -----------------------------------


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda o: o.retry_messages("message_abc"), "message_ids"),
        (lambda o: o.retry_messages(b"message_abc"), "message_ids"),
        (lambda o: o.wait_for_outcomes("message_abc"), "message_ids"),
        (lambda o: o.wait_for_outcomes(batch_ids="batch_abc"), "batch_ids"),
        (lambda o: o.retry_until_settled("message_abc"), "message_ids"),
        (lambda o: o.retry_until_settled(batch_ids="batch_abc"), "batch_ids"),
    ],
)
async def test_a_bare_str_of_ids_is_refused_before_any_call(call: Any, name: str) -> None:
    """``retry_messages("message_abc")`` once retried each character: 8 "IDs", 14 calls."""
    async with PostmanClient(api_key="key_test_x", campaign_id="campaign_1") as client:
        orchestrator = RetryOrchestrator(client)
        with pytest.raises(TypeError, match=f"{name} takes an iterable of IDs"):
            await call(orchestrator)
        assert client.calls == 0 and orchestrator.report is None


# -- the load-test environment: pending at the aggregator is as far as a message goes -----


@pytest.mark.parametrize(
    ("environment", "status", "parked"),
    [
        ("loadtest", MessageStatus.SENDING, True),
        ("loadtest", MessageStatus.SENT, True),
        ("loadtest", MessageStatus.CREATED, False),  # still on its way to the aggregator
        ("loadtest", MessageStatus.ENQUEUED, False),
        ("loadtest", MessageStatus.SUCCESS, False),  # final, not parked
        ("test", MessageStatus.SENDING, False),
        ("production", MessageStatus.SENT, False),
    ],
)
def test_which_statuses_stay_pending(environment: str, status: MessageStatus, parked: bool) -> None:
    assert environments.ENVIRONMENTS[environment].is_parked(status) is parked
