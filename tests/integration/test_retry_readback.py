"""Retries whose answer was lost, decided as finely as the server allows, against the
simulator over loopback HTTP, judged by its record of every retry POST it processed.

- A lost answer for a message already at the attempt cap is decided from the read-back
  (``attempts_exhausted``), never offered to feed back: no second, refused POST.
- Without a known attempt count, the createdAt rule decides: a retry that took is
  "retried (confirmed by read-back)", one that did not is "not applied", and "outcome
  unknown" is left for reads that carry no time at all. ``benchmarks/retry_readback.py``
  counts it against the previous rule.
"""

from __future__ import annotations

from typing import Any

import pytest

import postman_async as pa
from postman_async.testing import Faults, PostmanSimulator

from ..checks import check_no_double_retry
from ..helpers import client_for

FAIL = ("failure", "delivery_error", "recipient_unavailable")
LOST = {
    "reset after processing": (Faults(reset_after_rate=1.0, only_methods=("POST",)), 30.0),
    "timeout after processing": (Faults(latency=0.5, only_methods=("POST",)), 0.2),
}


async def at_cap(make_sim: Any, count: int = 5) -> tuple[PostmanSimulator, list[str]]:
    sim = await make_sim(max_attempts=3)
    ids = [sim.create_message(outcome=FAIL, attempts=3).id for _ in range(count)]
    return sim, ids


async def test_a_lost_answer_at_the_cap_is_decided_without_another_post(make_sim: Any) -> None:
    sim, ids = await at_cap(make_sim)
    sim.faults = LOST["reset after processing"][0]
    async with client_for(sim) as client:
        orchestrator = pa.RetryOrchestrator(client, max_attempts=3)
        report = await orchestrator.retry_messages(ids)  # attempt counts not known
        assert {r.outcome for r in report} == {pa.Outcome.EXHAUSTED}
        assert all("answer was lost" in (r.detail or "") for r in report)
        assert report.failures() == [] and report.uncertain() == []
        sim.faults = Faults()
        again = await orchestrator.retry_messages(report.failures())
        settled = await orchestrator.retry_until_settled(ids, timeout=60)
    assert len(again) == 0 and sorted(settled.exhausted) == sorted(ids)
    assert all(sim.posts.retries[i] == 1 for i in ids)  # the one refused POST each
    assert sum(sim.posts.accepted_retries.values()) == 0
    check_no_double_retry(sim)


async def test_a_cap_learned_earlier_in_the_run_decides_a_later_lost_answer(
    make_sim: Any,
) -> None:
    sim, ids = await at_cap(make_sim, 2)
    count = [0]

    async def before() -> None:  # the first refusal is answered; the second's answer lost
        count[0] += 1
        sim.faults = LOST["reset after processing"][0] if count[0] == 2 else Faults()

    async with client_for(sim) as client:
        hooked = client.with_options(before_post=before)
        report = await pa.RetryOrchestrator(hooked, concurrency=1).retry_messages(ids)
        assert client.attempt_cap.describe() == "the server's cap is 3 attempts"
    first, second = (report[i] for i in ids)
    assert first.outcome is second.outcome is pa.Outcome.EXHAUSTED
    assert "answer was lost" in (second.detail or "") and report.failures() == []
    check_no_double_retry(sim)


async def test_retry_message_at_the_cap_says_it_will_never_be_applied(make_sim: Any) -> None:
    sim, (message_id,) = await at_cap(make_sim, 1)
    sim.faults = LOST["reset after processing"][0]
    async with client_for(sim) as client:
        client.attempt_cap.learn_refused(3)
        with pytest.raises(pa.OutcomeUnknownError) as info:
            await client.retry_message(message_id)
    assert info.value.applied is False and "will never be" in str(info.value)
    assert sim.posts.retries[message_id] == 1


@pytest.mark.parametrize("fault", list(LOST))
async def test_lost_answers_without_a_count_are_decided_by_created_at(
    make_sim: Any, fault: str
) -> None:
    faults, timeout = LOST[fault]
    sim = await make_sim(max_attempts=3)
    failed = [sim.create_message(outcome=FAIL).id for _ in range(20)]
    delivered = [sim.create_message(outcome=("success", None, None)).id for _ in range(5)]
    sim.faults = faults
    async with client_for(sim, timeout=timeout) as client:
        report = await pa.RetryOrchestrator(client).retry_messages(failed + delivered)
        calls = report.calls
    unknown = [r.message_id for r in report if r.applied is None]
    assert unknown == []  # every lost answer decided
    for message_id in failed:  # each retry took (the server's record), and was said to
        result = report[message_id]
        assert result.outcome is pa.Outcome.RETRIED and result.applied is True
        assert "confirmed by read-back" in (result.detail or "")
        assert sim.posts.accepted_retries[message_id] == 1
    for message_id in delivered:  # refused: not applied, and said so
        assert report[message_id].outcome is pa.Outcome.NOT_IN_FAILURE
        assert sim.posts.accepted_retries[message_id] == 0
    # The POST and one read each; "not applied" is read once more after the re-check wait,
    # in case the POST was still on its way.
    assert calls == 2 * len(failed) + 3 * len(delivered)
    check_no_double_retry(sim)


async def test_a_retry_the_server_never_saw_is_not_applied_and_safe_to_feed_back(
    make_sim: Any,
) -> None:
    sim = await make_sim(max_attempts=3)
    ids = [sim.create_message(outcome=FAIL).id for _ in range(5)]
    sim.faults = Faults(reset_before_rate=1.0, only_methods=("POST",))
    async with client_for(sim) as client:
        orchestrator = pa.RetryOrchestrator(client)
        report = await orchestrator.retry_messages(ids)
        assert all(r.applied is False for r in report) and sorted(report.failures()) == sorted(ids)
        assert sum(sim.posts.retries.values()) == 0  # the server never processed them
        sim.faults = Faults()
        again = await orchestrator.retry_messages(report.failures())
    assert again.counts[pa.Outcome.RETRIED] == 5
    check_no_double_retry(sim)
