"""Mutation proof for the read-back of lost send answers: each check passes against the real
client and FAILS against a client with one rule broken (monkeypatched). A check never seen
failing proves nothing.

- no double send: a client that re-sends after a lost answer (the opt-in forced on, the
  read-back made to say "not found") -> check_no_double_send;
- outcomes true to the server: a client whose read-back ignores the candidates, and so says
  "not sent" for a message that exists -> check_send_outcomes;
- a message is returned for one send only: a read-back that ignores the IDs this client
  already knows (and takes the oldest match) -> check_send_outcomes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest

import postman_async as pa
from postman_async import _send_readback, readback
from postman_async.testing import Faults, PostmanSimulator

from ..checks import check_no_double_send
from ..helpers import client_for, sim_time

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
