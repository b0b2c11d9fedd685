"""Sends and batch uploads whose answer was lost, against the simulator over loopback HTTP,
judged by its ground truth (every processed send POST per recipient and values, every batch
upload per file content).

A lost answer is read back, never re-sent blindly: the message (or batch) the POST created is
returned, confirmed by read-back, with exactly one send on the server; one that the server
never saw is "not found" (NotSentError), and re-sent once only when the caller asked. Waits
run on the simulator's clock (the client's sleep advances it); nothing here reads the wall
clock.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import postman_async as pa
from postman_async import _send_readback, readback
from postman_async.testing import Faults, PostmanSimulator, send_key

from ..checks import check_no_double_send
from ..helpers import client_for, sim_time

RECIPIENT = "6591234567"
VALUES = {"body": "Your OTP is 123456"}
KEY = send_key(RECIPIENT, VALUES)
POST_ONLY = ("POST",)

#: Faults that withhold the answer after the server processed the POST.
LOST_AFTER_PROCESSING: dict[str, dict[str, Any]] = {
    "reset after processing": {"faults": Faults(reset_after_rate=1.0, only_methods=POST_ONLY)},
    "5xx after processing": {"faults": Faults(server_error_after_rate=1.0, only_methods=POST_ONLY)},
    "timeout after processing": {
        "faults": Faults(latency=0.5, only_methods=POST_ONLY),
        "timeout": 0.2,
    },
    "truncated 201": {"faults": Faults(malformed_json_rate=1.0, only_methods=POST_ONLY)},
    "empty 201": {
        "faults": Faults(malformed_json_rate=1.0, malformed_body=b"", only_methods=POST_ONLY)
    },
    "garbage 201": {
        "faults": Faults(
            malformed_json_rate=1.0, malformed_body=b"\x00\xff<html>oops", only_methods=POST_ONLY
        )
    },
}
ROWS = [
    {"recipient": "6591234567", "language": "english", "body": "Hi, Tan"},
    {"recipient": "6598765432", "language": "english", "body": "Hi, Lim"},
    {"recipient": "6591112222", "language": "english", "body": 'Hi, "Ong"\nBye'},
]


def _client(sim: PostmanSimulator, **options: Any) -> pa.PostmanClient:
    """A client whose clock and sleeps are the simulator's (a wait advances the simulator)."""
    return client_for(sim, **{**sim_time(sim), **options})


def _posts(sim: PostmanSimulator) -> int:
    """POSTs that reached the server, processed or not."""
    return sum(1 for r in sim.request_log if r.method == "POST")


@pytest.mark.parametrize("name", list(LOST_AFTER_PROCESSING))
async def test_a_created_message_whose_answer_was_lost_is_returned(make_sim, name: str) -> None:
    scenario = LOST_AFTER_PROCESSING[name]
    sim = await make_sim(faults=scenario["faults"])
    async with _client(sim, timeout=scenario.get("timeout", 30.0)) as client:
        message = await client.send_message(RECIPIENT, "english", VALUES)
        calls = client.calls
    assert message.confirmed_by_readback is True
    assert message.id in sim.messages and message.values == VALUES
    assert sim.posts.sends[KEY] == 1 and _posts(sim) == 1
    assert calls == 2  # the POST and one search listing
    check_no_double_send(sim)


@pytest.mark.parametrize("name", [n for n in LOST_AFTER_PROCESSING if "timeout" not in n])
async def test_a_created_batch_whose_answer_was_lost_is_returned(make_sim, name: str) -> None:
    sim = await make_sim(faults=LOST_AFTER_PROCESSING[name]["faults"])
    async with _client(sim) as client:
        result = await client.send_batch(ROWS)
        calls = client.calls
    assert result.confirmed_by_readback is True
    assert sim.batches[result.batch_id].original_file_name == "messages.csv"
    assert sum(sim.posts.batch_uploads.values()) == 1 and _posts(sim) == 1
    assert calls == 3  # the POST, one search listing, one page of the batch
    check_no_double_send(sim)


async def test_a_send_the_server_never_saw_is_not_found_and_not_resent(make_sim) -> None:
    sim = await make_sim(faults=Faults(reset_before_rate=1.0, only_methods=POST_ONLY))
    async with _client(sim) as client:
        with pytest.raises(pa.NotSentError) as info:
            await client.send_message(RECIPIENT, "english", VALUES)
        calls = client.calls
    error = info.value
    assert isinstance(error, pa.OutcomeUnknownError) and error.applied is False
    assert error.recipient == "******4567" and error.reads == 2 and not error.resent
    assert error.searched_from is not None and error.searched_at is not None
    assert error.searched_from < error.searched_at
    text = str(error)
    assert RECIPIENT not in text and "******4567" in text
    assert "not proof that it was not sent" in text and "resend_if_not_found=True" in text
    assert sim.posts.sends[KEY] == 0 and _posts(sim) == 1
    assert calls == 3  # the POST, a search, and one more after the wait


async def test_opted_in_resend_after_not_found_sends_exactly_one(make_sim) -> None:
    sim = await make_sim(faults=Faults(reset_before_rate=1.0, only_methods=POST_ONLY))
    advance = sim_time(sim)["sleep"]

    async def sleep(delay: float) -> None:  # the network heals during the re-check wait
        sim.faults = Faults()
        await advance(delay)

    async with client_for(sim, clock=sim.clock, sleep=sleep) as client:
        message = await client.send_message(RECIPIENT, "english", VALUES, resend_if_not_found=True)
    assert message.confirmed_by_readback is False  # the re-send's own answer
    assert sim.posts.sends[KEY] == 1 and _posts(sim) == 2
    check_no_double_send(sim)


async def test_the_client_default_resends_once_and_never_twice(make_sim) -> None:
    sim = await make_sim(faults=Faults(reset_before_rate=1.0, only_methods=POST_ONLY))
    async with _client(sim, resend_if_not_found=True) as client:
        with pytest.raises(pa.NotSentError) as info:
            await client.send_message(RECIPIENT, "english", VALUES)
        assert info.value.resent is True and "not re-sent again" in str(info.value)
        assert _posts(sim) == 2  # the POST and its one re-send, both dropped
        with pytest.raises(pa.NotSentError):  # a per-call False wins over the default
            await client.send_message(RECIPIENT, "english", VALUES, resend_if_not_found=False)
    assert _posts(sim) == 3 and sim.posts.sends[KEY] == 0


async def test_an_older_identical_batch_is_not_taken_for_the_lost_one(make_sim) -> None:
    sim = await make_sim()
    async with _client(sim) as other:  # another process uploaded the same file a minute ago
        older = await other.send_batch(ROWS)
    sim.advance(60.0)
    sim.faults = Faults(reset_after_rate=1.0, only_methods=POST_ONLY)
    async with _client(sim) as client:
        result = await client.send_batch(ROWS)
    assert result.confirmed_by_readback and result.batch_id != older.batch_id
    assert set(sim.batches) == {older.batch_id, result.batch_id}
    assert list(sim.posts.batch_uploads.values()) == [2]  # one upload each, none repeated


async def test_a_batch_the_server_never_saw_is_not_found(make_sim) -> None:
    sim = await make_sim(faults=Faults(reset_before_rate=1.0, only_methods=POST_ONLY))
    async with _client(sim) as client:
        with pytest.raises(pa.NotSentError) as info:
            await client.send_batch(ROWS)
        calls = client.calls
    assert "batch upload of 3 row(s)" in str(info.value) and info.value.reads == 2
    assert sim.batches == {} and _posts(sim) == 1
    assert calls == 3  # the POST and two searches (no candidate batch: no page read)


async def test_identical_sends_are_never_confused(make_sim) -> None:
    sim = await make_sim()
    async with _client(sim) as client:
        # Two identical sends in flight at once, both answered: two messages, two IDs.
        first, second = await asyncio.gather(
            client.send_message(RECIPIENT, "english", VALUES),
            client.send_message(RECIPIENT, "english", VALUES),
        )
        assert first.id != second.id and not first.confirmed_by_readback
        # A third identical send loses its answer: the read-back lists all three and picks
        # the one this client does not know.
        sim.faults = Faults(reset_after_rate=1.0, only_methods=POST_ONLY)
        third = await client.send_message(RECIPIENT, "english", VALUES)
    assert third.confirmed_by_readback and third.id not in {first.id, second.id}
    assert set(sim.messages) == {first.id, second.id, third.id}
    assert sim.posts.sends[KEY] == 3  # three sends asked for, three made


async def test_an_older_identical_message_is_not_taken_for_the_lost_one(make_sim) -> None:
    sim = await make_sim(faults=Faults(reset_after_rate=1.0, only_methods=POST_ONLY))
    old = sim.create_message(RECIPIENT, values=VALUES, age=30.0)  # yesterday's, say
    async with _client(sim) as client:
        message = await client.send_message(RECIPIENT, "english", VALUES)
    assert message.confirmed_by_readback and message.id != old.id
    assert sim.posts.sends[KEY] == 1


async def test_an_unknown_identical_message_in_the_window_is_ambiguous(make_sim) -> None:
    sim = await make_sim(faults=Faults(reset_after_rate=1.0, only_methods=POST_ONLY))
    other = sim.create_message(RECIPIENT, values=VALUES, age=0.5)  # another process's send
    async with _client(sim) as client:
        with pytest.raises(pa.AmbiguousSendError) as info:
            await client.send_message(RECIPIENT, "english", VALUES)
        calls = client.calls
    ids = {m.id for m in info.value.candidates}
    assert other.id in ids and len(ids) == 2 and info.value.applied is None
    assert isinstance(info.value, pa.OutcomeUnknownError)
    assert sim.posts.sends[KEY] == 1 and calls == 3  # re-checked once after the wait


async def test_a_failed_read_back_leaves_the_outcome_unknown(make_sim) -> None:
    sim = await make_sim(faults=Faults(reset_after_rate=1.0))  # every answer is lost
    async with _client(sim, max_retries=1) as client:
        with pytest.raises(pa.OutcomeUnknownError) as info:
            await client.send_message(RECIPIENT, "english", VALUES)
    assert type(info.value) is pa.OutcomeUnknownError and info.value.applied is None
    assert "reading it back failed too" in str(info.value)
    assert sim.posts.sends[KEY] == 1 and _posts(sim) == 1


async def test_a_2xx_not_found_is_never_not_sent_nor_resent(make_sim, monkeypatch) -> None:
    sim = await make_sim(faults=Faults(malformed_json_rate=1.0, only_methods=POST_ONLY))
    monkeypatch.setattr(_send_readback, "send_verdict", lambda *a, **k: readback.NOT_APPLIED)
    async with _client(sim, resend_if_not_found=True) as client:
        with pytest.raises(pa.OutcomeUnknownError) as info:
            await client.send_message(RECIPIENT, "english", VALUES)
    assert type(info.value) is pa.OutcomeUnknownError and info.value.applied is True
    assert "answered 2xx (created)" in str(info.value)
    assert _posts(sim) == 1 and sim.posts.sends[KEY] == 1


async def test_views_share_what_the_client_knows(make_sim) -> None:
    sim = await make_sim()
    async with _client(sim) as client:
        first = await client.send_message(RECIPIENT, "english", VALUES)
        sim.faults = Faults(reset_after_rate=1.0, only_methods=POST_ONLY)
        second = await client.with_options(timeout=5).send_message(RECIPIENT, "english", VALUES)
    assert second.confirmed_by_readback and second.id != first.id
