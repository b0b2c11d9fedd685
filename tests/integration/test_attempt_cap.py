"""The attempt cap is learned, not assumed: against servers with cap 3 and cap 4, settling
delivers every message the server allows, and learning the cap costs a few refused calls."""

from __future__ import annotations

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
    async with client_for(sim) as client:
        settle = await settled_orchestrator(client, sim).retry_until_settled(
            singles, batch_ids=[batch.id], timeout=3600
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
    check_no_double_retry_per_round(sim, settle)
    check_no_batch_flipped(sim)


def check_no_double_retry_per_round(sim: Any, settle: pa.SettleReport) -> None:
    """Over a settle, each message gets at most one retry POST per round."""
    rounds = len(settle.rounds)
    assert max(sim.posts.retries.values(), default=0) <= rounds


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
    async with client_for(sim) as client:
        settle = await settled_orchestrator(client, sim).retry_until_settled(singles, timeout=3600)
    assert settle.delivered == (8 if cap == 4 else 0)
    # One probe at 3 attempts goes first, alone; its answer decides for the other seven.
    assert refused_posts(sim) == (0 if cap == 4 else 1)
    assert sum(r.probes for r in settle.rounds) == 1
    check_no_double_retry_per_round(sim, settle)
