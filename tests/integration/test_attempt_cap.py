"""The attempt cap is learned, not assumed: against servers with cap 3 and cap 4, settling
delivers every message the server allows, and learning the cap costs a few refused calls."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest

import postman_async as pa

from ..checks import check_no_batch_flipped, check_no_double_retry
from ..helpers import client_for, settled_orchestrator

FAIL = ("failure", "delivery_error", "recipient_unavailable")
OK = ("success", None, None)
#: fails on attempts 1 to 3, delivered by a fourth
LATE = [FAIL, FAIL, FAIL, OK]


def refused_posts(sim: Any) -> int:
    posts = sim.posts
    single = sum(posts.retries.values()) - sum(posts.accepted_retries.values())
    batch = sum(posts.batch_retries.values()) - sum(posts.accepted_batch_retries.values())
    return single + batch


@pytest.mark.parametrize("cap", [3, 4])
async def test_settle_delivers_every_message_the_server_allows(make_sim, cap: int) -> None:
    sim = await make_sim(max_attempts=cap)
    batch = sim.create_batch(["6591234567"] * 20, outcomes=[LATE] * 10 + [[OK]] * 10)
    singles = [sim.create_message(outcomes=LATE).id for _ in range(5)]
    rounds = RoundLedger(sim)
    async with client_for(sim) as client:
        settle = await settled_orchestrator(client, sim).retry_until_settled(
            singles, batch_ids=[batch.id], timeout=3600, on_progress=rounds
        )
    late = {*batch.message_ids[:10], *singles}
    if cap == 4:
        assert settle.delivered == 25 and settle.exhausted == []
        assert all(len(sim.messages[i].attempts) == 4 for i in late)
    else:
        assert settle.delivered == 10 and sorted(settle.exhausted) == sorted(late)
        assert all(len(sim.messages[i].attempts) == 3 for i in late)
    assert settle.unsettled == []
    if cap == 4:  # every fourth attempt was taken; none had to be refused to learn that
        assert settle.attempt_cap == "the server allows at least 4 attempts"
        assert refused_posts(sim) == 0
    else:  # one refused batch retry taught it, before any single retry at 3 was sent
        assert settle.attempt_cap == "the server's cap is 3 attempts"
        assert refused_posts(sim) == 1
    rounds.check(settle)
    # The batch's messages are retried by the batch's POSTs only; each single got one
    # accepted POST per attempt it gained (from 1 to the cap), and none refused.
    assert all(sim.posts.retries[i] == 0 for i in batch.message_ids)
    assert {sim.posts.retries[i] for i in singles} == {cap - 1}
    assert {sim.posts.accepted_retries[i] for i in singles} == {cap - 1}
    check_no_batch_flipped(sim)


class RoundLedger:
    """The simulator's retry POSTs per message, round by round of a settle (an
    ``on_progress`` callback: the simulator runs in the test's event loop, so its ledger at
    each round's first phase is exact).

    Over a settle a message may be retried once per round (each retry gains it an attempt,
    up to the cap); within one round, never twice. No message gets a retry POST after it
    was delivered or once the cap was known to be reached."""

    def __init__(self, sim: Any) -> None:
        self.sim = sim
        self.round = 0
        self.at_start: list[Counter[str]] = []

    def __call__(self, progress: pa.SettleProgress) -> None:
        if progress.round != self.round:
            self.round = progress.round
            self.at_start.append(Counter(self.sim.posts.retries))

    def check(self, settle: pa.SettleReport) -> None:
        assert len(self.at_start) == len(settle.rounds) > 0
        marks = [*self.at_start, Counter(self.sim.posts.retries)]
        for number, (before, after) in enumerate(itertools.pairwise(marks), start=1):
            doubles = {m: n for m, n in (after - before).items() if n > 1}
            assert not doubles, f"round {number}: more than one retry POST for {doubles}"


@pytest.mark.parametrize("cap", [3, 4])
async def test_retry_batch_and_retry_messages_learn_the_cap(make_sim, cap: int) -> None:
    sim = await make_sim(max_attempts=cap)
    at_three = sim.create_batch(["6511112222"], outcomes=[[FAIL]])
    for message_id in at_three.message_ids:
        sim.messages[message_id].attempts *= 3  # three failed attempts
    ids = [sim.create_message(outcome=FAIL, attempts=3).id for _ in range(4)]
    async with client_for(sim) as client:
        orchestrator = pa.RetryOrchestrator(client)
        batch_report = await orchestrator.retry_batch(at_three.id)
        report = await orchestrator.retry_messages(ids, known_attempts=dict.fromkeys(ids, 3))
    if cap == 4:
        assert batch_report.fired
        assert report.counts[pa.Outcome.RETRIED] == 4
    else:
        assert batch_report.reason is pa.BatchRetryReason.NOTHING_TO_RETRY
        assert batch_report.detail == "exhausted: the server's cap is 3 attempts"
        # The batch's answer taught the cap: no single retry at 3 attempts is sent.
        assert report.counts[pa.Outcome.EXHAUSTED] == 4
        assert sum(sim.posts.retries.values()) == 0
        assert all("the server's cap is 3" in (r.detail or "") for r in report)
    check_no_double_retry(sim)


@pytest.mark.parametrize("cap", [3, 4])
async def test_single_retries_probe_the_cap_once(make_sim, cap: int) -> None:
    sim = await make_sim(max_attempts=cap)
    singles = [sim.create_message(outcomes=LATE).id for _ in range(8)]
    rounds = RoundLedger(sim)
    async with client_for(sim) as client:
        settle = await settled_orchestrator(client, sim).retry_until_settled(
            singles, timeout=3600, on_progress=rounds
        )
    assert settle.delivered == (8 if cap == 4 else 0)
    # One probe at 3 attempts goes first, alone; its answer decides for the other seven.
    assert refused_posts(sim) == (0 if cap == 4 else 1)
    assert sum(r.probes for r in settle.rounds) == 1
    rounds.check(settle)
    # Each message: one accepted POST per attempt it gained (1 to 3, and to 4 if allowed);
    # at cap 3 the probe alone was refused, the other seven were not POSTed at 3.
    assert {sim.posts.accepted_retries[i] for i in singles} == {min(cap, 4) - 1}
    refused = {i: sim.posts.retries[i] - sim.posts.accepted_retries[i] for i in singles}
    assert sorted(refused.values()) == [0] * 7 + [0 if cap == 4 else 1]
