"""RetryOrchestrator against the simulator over loopback HTTP (fast rate; the lifecycle is
stepped with ``sim.advance`` or by the orchestrator's own sleeps, never raced)."""

from __future__ import annotations

import asyncio
import json

import pytest

import postman_async as pa
from postman_async.testing import PostmanSimulator

from ..helpers import (
    assert_no_leftover_tasks,
    client_for,
    fast_orchestrator,
    settled_orchestrator,
    stopped_clock,
    wait_for_condition,
)

FAIL = (pa.MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")
OK = (pa.MessageStatus.SUCCESS, None, None)


async def test_every_outcome_class_and_one_call_per_message(make_sim) -> None:
    sim: PostmanSimulator = await make_sim()
    failed = [sim.create_message("6591234567", outcome=FAIL).id for _ in range(20)]
    delivered = sim.create_message("6591234567", outcome=OK).id
    exhausted = sim.create_message("6591234567", outcome=FAIL, attempts=3).id
    async with client_for(sim) as client:
        batch_id = (
            await client.send_batch(
                [{"recipient": "6511112222", "language": "english", "body": "x"}]
            )
        ).batch_id
        sim.advance(10)
        sim.set_batch_status(batch_id, pa.BatchStatus.MESSAGES_ENQUEUING)
        (blocked,) = sim.batches[batch_id].message_ids
        before = sim.stats().requests
        ids = [
            *failed,
            failed[0],
            failed[1],
            delivered,
            exhausted,
            blocked,
            "message_missing",
            "bad/id",
        ]
        progress: list[int] = []
        report = await fast_orchestrator(client).retry_messages(
            ids, on_progress=lambda r: progress.append(len(r))
        )
    assert len(report) == 25 and report.duplicates == 2
    assert set(report.ids(pa.Outcome.RETRIED)) == set(failed)
    assert report[delivered].outcome is pa.Outcome.NOT_IN_FAILURE
    assert report[exhausted].outcome is pa.Outcome.EXHAUSTED
    assert report[blocked].outcome is pa.Outcome.BATCH_BLOCKED
    assert report["message_missing"].outcome is pa.Outcome.NOT_FOUND
    assert report["bad/id"].outcome is pa.Outcome.ERROR
    assert isinstance(report["bad/id"].error, pa.ValidationError)
    assert report[failed[0]].message is not None
    assert progress[-1] == 25 and report.finished
    # One POST per distinct valid ID, one diagnostic GET per skipped message (3), and one
    # read of the first exhausted message, which teaches the cap.
    spent = sim.stats().requests - before
    assert report.calls == spent == 24 + 3 + 1
    assert all(sim.posts.retries[i] == 1 for i in failed)
    assert sim.posts.retries[exhausted] == 1  # the server's answer taught the cap
    assert report[exhausted].detail == "exhausted: the server's cap is 3 attempts"
    data = json.loads(json.dumps(report.to_dict()))
    assert data["summary"]["counts"]["retried"] == 20
    assert report.failures() == []


async def test_async_iterable_input_and_feeding_failures_back(make_sim) -> None:
    sim = await make_sim(faults=pa.testing.Faults(server_error_rate=0.3), seed=3)
    ids = [sim.create_message("6591234567", outcome=FAIL).id for _ in range(30)]

    async def stream():
        for message_id in ids:
            yield message_id

    async with client_for(sim, max_retries=0) as client:
        orchestrator = fast_orchestrator(client, concurrency=4)
        first = await orchestrator.retry_messages(stream())
        again = first.failures()
        assert again, "30% 5xx should leave some retries ambiguous"
        sim.faults.server_error_rate = 0.0
        second = await orchestrator.retry_messages(again)
    assert len(first) == 30
    retried = set(first.ids(pa.Outcome.RETRIED)) | set(second.ids(pa.Outcome.RETRIED))
    assert retried == {i for i in ids if sim.posts.accepted_retries[i] == 1}
    assert all(sim.posts.retries[i] <= 1 for i in ids)


async def test_fatal_auth_error_stops_the_run(make_sim) -> None:
    sim = await make_sim()
    ids = [sim.create_message(outcome=FAIL).id for _ in range(50)]
    async with client_for(sim, api_key="key_test_nope") as client:
        orchestrator = fast_orchestrator(client, concurrency=2)
        with pytest.raises(pa.InvalidApiKeyError) as info:
            await orchestrator.retry_messages(ids)
    partial = info.value.report  # type: ignore[attr-defined]
    assert partial is orchestrator.report and len(partial) <= 2
    assert sim.stats().requests <= 2


async def test_cancellation_leaves_nothing_behind(make_sim) -> None:
    sim = await make_sim(rate_limit=20.0)
    ids = [sim.create_message(outcome=FAIL).id for _ in range(200)]
    async with client_for(sim) as client:
        orchestrator = fast_orchestrator(client, concurrency=8)
        run = asyncio.ensure_future(orchestrator.retry_messages(ids))
        await wait_for_condition(lambda: len(retried(sim)) >= 10, "ten retries processed")
        tasks_before = len(asyncio.all_tasks())
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await asyncio.sleep(0)
        assert len(asyncio.all_tasks()) < tasks_before
        # A POST written before the cancel may still be in the server's hands: wait for it.
        await wait_for_condition(
            lambda: all(r.status for r in sim.request_log), "every request answered"
        )
    report = orchestrator.report
    assert report is not None and not report.finished and report.pending == []
    posted = retried(sim)
    assert set(sim.posts.retries.values()) == {1}  # one POST for each of them, never two
    # Every ID the server saw a POST for is in the report: retried, or cancelled in flight
    # (uncertain); the others in it were cancelled before their POST. At most the 8 workers'
    # IDs were in hand beyond what the server had processed at the cancel.
    outcomes = {r.message_id: r for r in report}
    assert posted <= set(outcomes) and 10 <= len(outcomes) <= len(posted) + 8
    assert set(report.ids(pa.Outcome.RETRIED)) <= posted
    assert all(
        r.outcome is pa.Outcome.CANCELLED and (r.uncertain or r.message_id not in posted)
        for r in report
        if r.outcome is not pa.Outcome.RETRIED
    )
    untouched = [i for i in ids if i not in outcomes]
    assert len(untouched) >= 200 - len(posted) - 8
    assert all(sim.posts.retries[i] == 0 for i in untouched)
    assert_no_leftover_tasks()


def retried(sim: PostmanSimulator) -> set[str]:
    """The IDs the server processed a retry POST for."""
    return {i for i, n in sim.posts.retries.items() if n}


async def _resolved_batch(
    sim: PostmanSimulator, client: pa.PostmanClient, recipients: list[str]
) -> str:
    rows = [{"recipient": r, "language": "english", "body": "x"} for r in recipients]
    batch_id = (await client.send_batch(rows)).batch_id
    sim.advance(10)
    return batch_id


async def test_retry_batch_fires_when_it_can_succeed(make_sim) -> None:
    sim = await make_sim()
    async with client_for(sim) as client:
        batch_id = await _resolved_batch(sim, client, ["6591234567", "6511112222", "6522222222"])
        report = await fast_orchestrator(client).retry_batch(batch_id)
    assert report.fired and report.reason is pa.BatchRetryReason.FIRED
    assert report.messages == 3
    assert set(report.retried_ids) == set(sim.batches[batch_id].message_ids[1:])
    assert sim.posts.accepted_batch_retries[batch_id] == sim.posts.batch_retries[batch_id] == 1
    # One listing page and the POST: a GET of the batch status would cost what the
    # harmless batch_not_found_or_is_not_retryable 400 costs, so none is spent.
    assert report.calls == 2


async def test_retry_batch_waits_rather_than_flipping_unresolved(make_sim) -> None:
    sim = await make_sim(step_delays=(30.0, 0.5, 0.5, 1.0, 2.0))  # created for 30 s
    async with client_for(sim) as client:
        batch_id = (
            await client.send_batch(
                [{"recipient": "6511112222", "language": "english", "body": "x"}]
            )
        ).batch_id
        sim.advance(1)
        orchestrator = settled_orchestrator(client, sim)
        early = await orchestrator.retry_batch(batch_id)
        assert not early.fired and early.reason is pa.BatchRetryReason.UNRESOLVED
        assert early.unresolved_ids == sim.batches[batch_id].message_ids
        assert sim.batch_status(batch_id) == pa.BatchStatus.MESSAGES_ENQUEUED  # not flipped
        assert sim.posts.batch_retries[batch_id] == 0
        late = await orchestrator.retry_batch(batch_id, wait_unresolved=60.0)
    assert late.fired and late.retried_ids == sim.batches[batch_id].message_ids
    assert sim.posts.flipped_batches[batch_id] == 0


async def test_retry_batch_exhausted_and_blocked_and_unknown(make_sim) -> None:
    sim = await make_sim()
    async with client_for(sim) as client:
        batch_id = await _resolved_batch(sim, client, ["6511112222", "6591234567"])
        failing = sim.batches[batch_id].message_ids[0]
        sim.messages[failing].attempts.extend(
            [sim.messages[failing].attempts[0]] * 2
        )  # 3 attempts: exhausted
        orchestrator = fast_orchestrator(client)
        # The cap is not assumed: the first try costs one harmless 400 and teaches it.
        exhausted = await orchestrator.retry_batch(batch_id)
        assert not exhausted.fired
        assert exhausted.reason is pa.BatchRetryReason.NOTHING_TO_RETRY
        assert exhausted.exhausted_ids == [failing]
        assert exhausted.detail == "exhausted: the server's cap is 3 attempts"
        assert sim.posts.batch_retries[batch_id] == 1
        again = await orchestrator.retry_batch(batch_id)
        assert again.reason is pa.BatchRetryReason.NOTHING_TO_RETRY and again.calls == 1
        assert sim.posts.batch_retries[batch_id] == 1  # learned: no second POST
        other = await _resolved_batch(sim, client, ["6511112222"])
        sim.set_batch_status(other, pa.BatchStatus.MESSAGES_ENQUEUING)
        blocked = await orchestrator.retry_batch(other)
        assert not blocked.fired and blocked.reason is pa.BatchRetryReason.BATCH_STATUS
        assert isinstance(blocked.error, pa.BatchNotRetryableError)
        unknown = await orchestrator.retry_batch("batch_nope")
        assert not unknown.fired and unknown.reason is pa.BatchRetryReason.BATCH_STATUS
    assert sum(sim.posts.accepted_batch_retries.values()) == 0
    assert sum(sim.posts.flipped_batches.values()) == 0


async def test_wait_for_outcomes_reads_batches_in_bulk(make_sim) -> None:
    sim = await make_sim(step_delays=(0.5, 0.5, 0.5, 0.5, 0.5), clock=stopped_clock)
    async with client_for(sim) as client:
        rows = [
            {"recipient": f"6591{i:06d}", "language": "english", "body": "x"} for i in range(1500)
        ]
        batch_id = (await client.send_batch(rows)).batch_id
        single = (await client.send_message("447911123456", "english", {"body": "x"})).id
        outcomes = await settled_orchestrator(client, sim).wait_for_outcomes(
            [single], batch_ids=[batch_id], timeout=10
        )
    assert outcomes.count(pa.MessageStatus.SUCCESS) == 1500
    assert outcomes.statuses[single] is pa.MessageStatus.SENT_TO_TELCO
    assert outcomes.pending == []
    routes = sim.stats().by_route
    listings = routes["GET /api/v2/campaigns/{campaign_id}/batch/{batch_id}/messages"]
    gets = routes["GET /api/v2/campaigns/{campaign_id}/messages/{message_id}"]
    # A poll reads 1,500 batch messages in at most 2 listing calls (1 when the newest page
    # has not moved on yet, so the older one has not either); the single needs a GET per
    # poll only until it is final. A handful of polls in all, never a GET per message.
    assert 2 <= listings <= 16
    assert 1 <= gets <= listings
    assert outcomes.calls == listings + gets


async def test_retry_until_settled_batch_and_mixed_input(make_sim) -> None:
    sim = await make_sim(failure_rate=0.3, seed=11, step_delays=(0.3, 0.2, 0.2, 0.3, 0.5))
    async with client_for(sim) as client:
        rows = [
            {"recipient": f"6591{i:06d}", "language": "english", "body": "x"} for i in range(300)
        ]
        rows.append({"recipient": "6511111111", "language": "english", "body": "x"})
        batch_a = (await client.send_batch(rows)).batch_id
        batch_b = (await client.send_batch(rows[:50])).batch_id
        singles = [
            (await client.send_message(f"6598{i:06d}", "english", {"body": "x"})).id
            for i in range(20)
        ]
        before = sim.stats().requests
        settle = await settled_orchestrator(client, sim).retry_until_settled(
            singles, batch_ids=[batch_a, batch_b], timeout=600
        )
    assert len(settle.states) == 371
    assert settle.unsettled == []
    assert settle.failed_for_good["recipient_invalid"] == 1
    assert settle.calls == sim.stats().requests - before
    purposes = settle.calls_by_purpose()
    assert purposes["batch_retries"] >= 2 and sum(purposes.values()) == settle.calls
    for message_id, state in settle.states.items():
        message = sim.messages[message_id]
        assert state.status == sim.message_status(message_id)
        if state.status is pa.MessageStatus.FAILURE and state.error_code != "recipient_invalid":
            assert len(message.attempts) == 3  # failed for good only when out of attempts
    assert settle.delivered == sum(
        1 for i in settle.states if sim.message_status(i) == pa.MessageStatus.SUCCESS
    )


async def test_urgent_send_not_starved_by_bulk_run(make_sim) -> None:
    sim = await make_sim(rate_limit=20.0)
    ids = [sim.create_message(outcome=FAIL).id for _ in range(80)]
    async with client_for(sim) as client:
        run = asyncio.ensure_future(fast_orchestrator(client, concurrency=16).retry_messages(ids))
        ahead = []
        # The bulk run under way: 16 workers queued behind the limiter from now on.
        await wait_for_condition(lambda: len(sim.request_log) >= 16, "16 bulk calls arrived")
        for _ in range(5):
            arrived_before = len(sim.request_log)
            await client.send_message("6591234567", "english", {"body": "OTP 123456"})
            log = sim.request_log[arrived_before:]
            sends = [i for i, r in enumerate(log) if r.route.endswith("/messages")]
            ahead.append(sends[0])  # bulk calls the server saw before the urgent send
            # Some bulk calls between urgent sends, with the bulk queue still full.
            seen = len(sim.request_log)
            await wait_for_condition(
                lambda seen=seen: len(sim.request_log) >= seen + 5, "five more bulk calls"
            )
        assert not run.done()  # each urgent send met a live bulk queue
        report = await run
    assert report.counts[pa.Outcome.RETRIED] == 80
    # Counted in arrivals, not wall time: behind 16 queued bulk calls it would be ~16.
    assert max(ahead) <= 2, ahead
    assert sim.stats().throttled == 0


async def test_campaigns_run_concurrently_each_at_its_rate(make_sim) -> None:
    second = pa.testing.Campaign(id="campaign_two", api_keys=("key_test_two",))
    sim = await make_sim(rate_limit=25.0)
    sim.add_campaign(second)
    first_ids = [sim.create_message(outcome=FAIL).id for _ in range(40)]
    second_ids = [
        sim.create_message(outcome=FAIL, campaign_id="campaign_two").id for _ in range(40)
    ]
    async with (
        client_for(sim) as one,
        client_for(sim, api_key="key_test_two", campaign_id="campaign_two") as two,
    ):
        reports = await asyncio.gather(
            fast_orchestrator(one).retry_messages(first_ids),
            fast_orchestrator(two).retry_messages(second_ids),
        )
    assert [r.counts[pa.Outcome.RETRIED] for r in reports] == [40, 40]
    for campaign_id in (sim.campaign_id, "campaign_two"):
        stats = sim.stats(campaign_id)
        assert stats.throttled == 0 and stats.max_per_second <= 25
