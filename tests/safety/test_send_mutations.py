"""Mutation proof for the read-back of lost send answers, the duplicate-upload guard, split
uploads and lost retry answers: each check passes against the real client and FAILS against
a client with one rule broken (monkeypatched). A check never seen failing proves nothing.

- no double send: a client that re-sends after a lost answer (the opt-in forced on, the
  read-back made to say "not found") -> check_no_double_send;
- outcomes true to the server: a client whose read-back ignores the candidates, and so says
  "not sent" for a message that exists -> check_send_outcomes;
- a message is returned for one send only: a read-back that ignores the IDs this client
  already knows (and takes the oldest match) -> check_send_outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

import postman_async as pa
from postman_async import _batch_upload, _fanout, _send_readback, readback
from postman_async.reports import MessageResult, Outcome
from postman_async.testing import Faults, PostmanSimulator

from ..checks import check_no_double_retry, check_no_double_send
from ..helpers import client_for, sim_time
from ..integration.test_batch_split import TEST_CAMPAIGN, check_no_double_upload

RECIPIENT = "6591234567"
VALUES = {"body": "Your OTP is 123456"}
LOST_AFTER_PROCESSING = Faults(reset_after_rate=1.0, only_methods=("POST",))
Mutation = Callable[[pytest.MonkeyPatch], None]


@attrs.define
class Run:
    sim: PostmanSimulator
    outcomes: list[object] = attrs.field(factory=list)  # each send's message or error


def check_send_outcomes(run: Run) -> None:
    """What the client said of each send is true on the server: no message returned for two
    sends, and "not sent" never said while the server holds a message nobody was given."""
    returned = [o for o in run.outcomes if isinstance(o, pa.Message)]
    ids = [m.id for m in returned]
    assert len(ids) == len(set(ids)), f"one message returned for two sends: {ids}"
    assert all(i in run.sim.messages for i in ids)
    if any(isinstance(o, pa.NotSentError) for o in run.outcomes):
        created = sum(run.sim.posts.sends.values())
        assert created == len(returned), f"'not sent', but {created - len(returned)} exist"


# -- mutations ------------------------------------------------------------------------------


def resend_after_lost_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The read-back always says "not found", and every send opts in to the re-send."""
    monkeypatch.setattr(_send_readback, "send_verdict", lambda *a, **k: readback.NOT_APPLIED)
    send = _send_readback.send_message

    async def always_resend(*args: Any, resend: bool | None = None) -> pa.Message:
        return await send(*args, resend=True)

    monkeypatch.setattr(_send_readback, "send_message", always_resend)


def ignore_candidates(monkeypatch: pytest.MonkeyPatch) -> None:
    """The read-back lists the recipient's messages but never looks at them."""
    monkeypatch.setattr(_send_readback, "send_verdict", lambda *a, **k: readback.NOT_APPLIED)


def ignore_known_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """The read-back forgets which messages this client already has, and takes the oldest
    match."""

    def verdict(sent: readback.SentMessage, messages: Any, **_: Any) -> Any:
        matches = [m for m in messages if sent.matches(m)]
        return readback.Applied(matches[-1]) if matches else readback.NOT_APPLIED

    monkeypatch.setattr(_send_readback, "send_verdict", verdict)


# -- scenarios ------------------------------------------------------------------------------


async def _send(client: pa.PostmanClient, run: Run) -> None:
    try:
        run.outcomes.append(await client.send_message(RECIPIENT, "english", VALUES))
    except pa.PostmanError as exc:
        run.outcomes.append(exc)


async def lost_send(make_sim: Any) -> Run:
    """One send, processed by the server, whose answer is lost."""
    run = Run(await make_sim(faults=LOST_AFTER_PROCESSING))
    async with client_for(run.sim, **sim_time(run.sim)) as client:
        await _send(client, run)
    return run


async def known_then_lost(make_sim: Any) -> Run:
    """Two identical sends answered, then a third identical one whose answer is lost."""
    run = Run(await make_sim())
    async with client_for(run.sim, **sim_time(run.sim)) as client:
        await asyncio.gather(_send(client, run), _send(client, run))
        run.sim.faults = LOST_AFTER_PROCESSING
        await _send(client, run)
    return run


CASES = [
    ("no double send", lost_send, resend_after_lost_answer, lambda r: check_no_double_send(r.sim)),
    ("not sent only when not created", lost_send, ignore_candidates, check_send_outcomes),
    ("a message returned once", known_then_lost, ignore_known_ids, check_send_outcomes),
]


@pytest.fixture
def patch() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield monkeypatch


@pytest.mark.parametrize(("name", "scenario", "mutation", "check"), CASES)
async def test_check_holds_for_the_real_client(
    make_sim: Any, name: str, scenario: Any, mutation: Mutation, check: Any
) -> None:
    run = await scenario(make_sim)
    assert all(isinstance(o, pa.Message) and o.confirmed_by_readback for o in run.outcomes[-1:])
    check(run)


@pytest.mark.parametrize(("name", "scenario", "mutation", "check"), CASES)
async def test_check_fails_for_a_broken_client(
    make_sim: Any,
    patch: pytest.MonkeyPatch,
    name: str,
    scenario: Any,
    mutation: Mutation,
    check: Any,
) -> None:
    mutation(patch)
    run = await scenario(make_sim)
    patch.undo()
    with pytest.raises(AssertionError):
        check(run)


# -- batch uploads and lost retry answers ---------------------------------------------------
#
# - the duplicate-upload guard: a client that skips it -> a second upload of the same file
#   (check_no_double_upload);
# - a split upload: a splitter that re-uploads a part whose answer was lost, instead of
#   reading it back -> that part on the server twice (check_no_double_upload, and
#   check_no_double_send: its rows are sends);
# - a lost retry answer at the attempt cap: a fan-out that offers it to feed back (as
#   before) -> a second, refused retry POST when it is fed back (check_no_double_retry);
# - the createdAt rule: a read-back that calls a retry which took "not applied" -> fed back,
#   a second retry (check_no_double_retry).


def skip_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    async def nothing(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(_batch_upload, "refuse_if_uploaded", nothing)


def reupload_a_lost_part(monkeypatch: pytest.MonkeyPatch) -> None:
    async def upload(client: Any, request: Any, priority: Any, what: str) -> Any:
        answer = await _send_readback._post(client, request, priority, pa.BatchSendResult)
        if isinstance(answer, _send_readback.Lost):  # blindly, as if nothing was processed
            answer = await _send_readback._post(client, request, priority, pa.BatchSendResult)
        assert not isinstance(answer, _send_readback.Lost)
        return answer

    monkeypatch.setattr(_batch_upload, "upload", upload)


def feed_back_at_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    def as_before(ex: Any, key: str, exc: pa.OutcomeUnknownError) -> Any:
        return MessageResult(key, Outcome.ERROR, str(exc), error=exc, applied=exc.applied)

    monkeypatch.setattr(_fanout, "_unknown_result", as_before)


def took_read_as_not_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(readback, "retry_created_after", lambda *a, **k: False)


async def same_file_twice(make_sim: Any) -> Run:
    run = Run(await make_sim())
    rows = [{"recipient": "6591234567", "language": "english", "body": "Hi"}]
    async with client_for(run.sim, **sim_time(run.sim)) as client:
        await client.send_batch(rows, guard_window=3600)
        with contextlib.suppress(pa.DuplicateUploadError):
            await client.send_batch(rows, guard_window=3600)
    return run


async def split_with_a_lost_part(make_sim: Any) -> Run:
    run = Run(await make_sim(campaigns=[TEST_CAMPAIGN]))
    rows = [{"recipient": f"6591{i:06d}", "language": "english", "body": "Hi"} for i in range(25)]
    count = [0]

    async def before() -> None:  # the second POST's answer is lost
        count[0] += 1
        run.sim.faults = LOST_AFTER_PROCESSING if count[0] == 2 else Faults()

    options = {"api_key": "key_test_abc", "campaign_id": TEST_CAMPAIGN.id, **sim_time(run.sim)}
    async with client_for(run.sim, environment="test", **options) as client:
        await client.with_options(before_post=before).send_batch(rows)
    return run


async def lost_retries_fed_back(make_sim: Any, *, attempts: int) -> Run:
    """Lost answers of retries with no known count, then the failures fed back. The first
    report is kept with the server's accepted retries as they stood after it."""
    run = Run(await make_sim(max_attempts=3))
    sim = run.sim
    failed = ("failure", "delivery_error", "recipient_unavailable")
    ids = [sim.create_message(outcome=failed, attempts=attempts).id for _ in range(3)]
    sim.faults = LOST_AFTER_PROCESSING
    async with client_for(sim) as client:
        orchestrator = pa.RetryOrchestrator(client, max_attempts=3)
        report = await orchestrator.retry_messages(ids)
        run.outcomes.append((report, dict(sim.posts.accepted_retries)))
        sim.faults = Faults()
        await orchestrator.retry_messages(report.failures())
    return run


async def at_the_cap(make_sim: Any) -> Run:
    return await lost_retries_fed_back(make_sim, attempts=3)


async def retries_that_took(make_sim: Any) -> Run:
    return await lost_retries_fed_back(make_sim, attempts=1)


def check_retry_outcomes(run: Run) -> None:
    """What the report says of each lost retry is what the server did: ``applied`` True
    exactly for the retries it accepted (unknown ones aside)."""
    for report, accepted in run.outcomes:
        for result in report:
            if result.applied is not None:
                took = accepted.get(result.message_id, 0) > 0
                assert result.applied is took, f"{result.message_id}: {result.detail}"


def no_double_upload_nor_send(run: Run) -> None:
    check_no_double_upload(run.sim)
    check_no_double_send(run.sim)


SIM_CASES = [
    (
        "the guard refuses a second upload",
        same_file_twice,
        skip_the_guard,
        lambda r: check_no_double_upload(r.sim),
    ),
    (
        "a lost part is read back",
        split_with_a_lost_part,
        reupload_a_lost_part,
        no_double_upload_nor_send,
    ),
    (
        "at the cap: no second POST",
        at_the_cap,
        feed_back_at_the_cap,
        lambda r: check_no_double_retry(r.sim),
    ),
    (
        "createdAt: a retry that took",
        retries_that_took,
        took_read_as_not_applied,
        check_retry_outcomes,
    ),
]


@pytest.mark.parametrize(("name", "scenario", "mutation", "check"), SIM_CASES)
async def test_upload_and_retry_checks_hold_for_the_real_client(
    make_sim: Any, name: str, scenario: Any, mutation: Mutation, check: Any
) -> None:
    check(await scenario(make_sim))


@pytest.mark.parametrize(("name", "scenario", "mutation", "check"), SIM_CASES)
async def test_upload_and_retry_checks_fail_for_a_broken_client(
    make_sim: Any,
    patch: pytest.MonkeyPatch,
    name: str,
    scenario: Any,
    mutation: Mutation,
    check: Any,
) -> None:
    mutation(patch)
    run = await scenario(make_sim)
    patch.undo()
    with pytest.raises(AssertionError):
        check(run)
