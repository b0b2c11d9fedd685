"""Fault injection: the client and orchestrator run to completion under each fault and a mix
of them, and afterwards the report agrees with the simulator's ground truth message by message.

After each scenario:
- every distinct input ID is in the report exactly once;
- no message received two processed retry POSTs (refused ones count too), and no intended send
  (recipient and values) two processed send POSTs;
- a `retried` message had exactly one accepted retry; a skipped one none; an error as many as
  its typed error says (applied False: 0, True: 1, unknown: at most 1);
- every error is a PostmanError, and no task is left behind (unclosed sessions fail the run,
  as warnings are errors).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import postman_async as pa
from postman_async.testing import Faults, PostmanSimulator, send_key

from ..helpers import (
    assert_no_leftover_tasks,
    backoff_until_listening,
    client_for,
    no_sleep,
    settled_orchestrator,
    wait_for_condition,
)

FAIL = (pa.MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")
OK = (pa.MessageStatus.SUCCESS, None, None)

SCENARIOS: dict[str, dict[str, Any]] = {
    "5xx 10%": {"faults": Faults(server_error_rate=0.10)},
    "resets 5% before, 5% after": {"faults": Faults(reset_before_rate=0.05, reset_after_rate=0.05)},
    "20% slower than the timeout": {"faults": Faults(latency=0.25, latency_rate=0.2)},
    "malformed JSON 10%": {"faults": Faults(malformed_json_rate=0.10)},
    "competing client 30%": {"faults": Faults(competing_share=0.3)},
    "restart mid-run": {"faults": Faults(), "restart": True},
    "mix": {
        "faults": Faults(
            server_error_rate=0.05,
            reset_before_rate=0.03,
            reset_after_rate=0.03,
            latency=0.25,
            latency_rate=0.05,
            malformed_json_rate=0.05,
            competing_share=0.3,
        ),
        "restart": True,
    },
}


def _check_result(sim: PostmanSimulator, result: pa.MessageResult, kind: str) -> None:
    assert sim.posts.retries[result.message_id] <= 1, result
    processed = sim.posts.accepted_retries[result.message_id]
    allowed = {
        "failed": {pa.Outcome.RETRIED, pa.Outcome.ERROR},
        "delivered": {pa.Outcome.NOT_IN_FAILURE, pa.Outcome.ERROR},
        "missing": {pa.Outcome.NOT_FOUND, pa.Outcome.ERROR},
    }[kind]
    assert result.outcome in allowed, result
    if result.outcome is pa.Outcome.RETRIED:
        assert processed == 1, result
    elif result.outcome is pa.Outcome.ERROR:
        assert isinstance(result.error, pa.PostmanError), result
        if isinstance(result.error, pa.OutcomeUnknownError):
            if result.error.applied is False:
                assert processed == 0, result
            elif result.error.applied is True:
                assert processed == 1, result
        else:
            assert processed == 0, result
    else:
        assert processed == 0, result


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_retry_run_under_faults(name: str) -> None:
    scenario = SCENARIOS[name]
    sim = PostmanSimulator(rate_limit=200.0, seed=len(name), faults=scenario["faults"])
    kinds = {sim.create_message(outcome=FAIL).id: "failed" for _ in range(60)}
    kinds.update({sim.create_message(outcome=OK).id: "delivered" for _ in range(6)})
    kinds.update({f"message_missing_{i}": "missing" for i in range(4)})
    ids = list(kinds) + list(kinds)[:10]  # with duplicates
    async with (
        sim,
        client_for(sim, timeout=0.15, sleep=backoff_until_listening(sim)) as client,
    ):
        run = asyncio.ensure_future(pa.RetryOrchestrator(client, concurrency=8).retry_messages(ids))
        sends = asyncio.ensure_future(_sends(client, 15))
        if scenario.get("restart"):  # mid-run: once the server has seen 20 requests
            await wait_for_condition(lambda: len(sim.request_log) >= 20, "the run under way")
            await sim.restart(downtime=0.1)
        report = await run
        outcomes = await sends
    assert report.finished and len(report) == len(kinds) and report.duplicates == 10
    assert {r.message_id for r in report} == set(kinds)
    for result in report:
        _check_result(sim, result, kinds[result.message_id])
    # Sends: each call either returned the one message it created or raised a typed error;
    # nothing was sent twice.
    created = [o for o in outcomes if isinstance(o, pa.Message)]
    assert all(sim.posts.sends[send_key(m.recipient or "", {"body": "x"})] == 1 for m in created)
    assert all(isinstance(o, (pa.Message, pa.PostmanError)) for o in outcomes)
    assert max(sim.posts.sends.values(), default=0) <= 1  # no intended send went twice
    assert sum(sim.posts.sends.values()) >= len(created)
    assert max(sim.posts.retries.values(), default=0) <= 1
    assert sum(sim.posts.flipped_batches.values()) == 0
    assert_no_leftover_tasks()


async def _sends(client: pa.PostmanClient, count: int) -> list[object]:
    results: list[object] = []
    for index in range(count):
        try:
            results.append(await client.send_message(f"659{index:07d}", "english", {"body": "x"}))
        except pa.PostmanError as exc:
            results.append(exc)
    return results


@pytest.mark.parametrize("seed", [4, 5, 6])
async def test_settle_under_a_mix_of_faults_matches_ground_truth(seed: int) -> None:
    faults = Faults(
        server_error_rate=0.05,
        reset_before_rate=0.03,
        reset_after_rate=0.03,
        malformed_json_rate=0.05,
        competing_share=0.3,
    )
    sim = PostmanSimulator(rate_limit=200.0, failure_rate=0.2, seed=seed, faults=Faults())
    async with (
        sim,
        client_for(sim, timeout=0.5, sleep=no_sleep) as client,
    ):
        rows = [
            {"recipient": f"6591{i:06d}", "language": "english", "body": "x"} for i in range(300)
        ]
        batch_id = (await client.send_batch(rows)).batch_id
        sim.faults = faults
        for limiter in sim._limiters.values():
            limiter.competing_share = faults.competing_share
        orchestrator = settled_orchestrator(client, sim)
        settle = await orchestrator.retry_until_settled(batch_ids=[batch_id], timeout=600)
    assert len(settle.states) == 300 and settle.unsettled == []
    for message_id, state in settle.states.items():
        message = sim.messages[message_id]
        assert state.status == sim.message_status(message_id)
        assert len(message.attempts) <= 3
        if state.status is pa.MessageStatus.FAILURE:
            assert len(message.attempts) == 3, message_id  # failed for good: out of attempts
    assert settle.delivered == sum(
        sim.message_status(i) == pa.MessageStatus.SUCCESS for i in settle.states
    )
    assert_no_leftover_tasks()
