"""retry_until_settled plans per batch: batch retries when they retry exactly what is worth
retrying, the cheaper choice otherwise (said in the report), bulk reads, budget share."""

from __future__ import annotations

import postman_async as pa
from postman_async.testing.server_limits import max_in_window

from ..helpers import client_for, fast_orchestrator, settled_orchestrator, stopped_clock

DELAYS = (0.2, 0.1, 0.1, 0.2, 0.2)


async def _batch(client: pa.PostmanClient, recipients: list[str]) -> str:
    rows = [{"recipient": r, "language": "english", "body": "x"} for r in recipients]
    return (await client.send_batch(rows)).batch_id


async def test_one_worthy_failure_among_unworthy_gets_a_single_retry(make_sim) -> None:
    sim = await make_sim(step_delays=DELAYS, clock=stopped_clock)
    async with client_for(sim) as client:
        batch_id = await _batch(client, ["6511112222", "6511111111", "6511113333", "6591234567"])
        settle = await settled_orchestrator(client, sim).retry_until_settled(
            batch_ids=[batch_id], timeout=300
        )
    worthy, invalid, content, _delivered = sim.batches[batch_id].message_ids
    assert sum(sim.posts.batch_retries.values()) == 0  # a batch retry would retry all three
    assert sim.posts.accepted_retries[worthy] == 2 and len(sim.messages[worthy].attempts) == 3
    assert sim.posts.retries[worthy] == 3  # the third, refused, taught the cap
    assert settle.attempt_cap == "the server's cap is 3 attempts"
    assert len(sim.messages[invalid].attempts) == 1 and len(sim.messages[content].attempts) == 1
    notes = [n for r in settle.rounds for n in r.notes]
    assert any("1 single retry" in n for n in notes)
    assert settle.failed_for_good == {
        "recipient_unavailable": 1,
        "recipient_invalid": 1,
        "content_invalid": 1,
    }
    assert settle.delivered == 1 and settle.unsettled == []


async def test_many_worthy_failures_get_one_batch_retry_and_the_report_says_why(make_sim):
    sim = await make_sim(step_delays=DELAYS, clock=stopped_clock)
    async with client_for(sim) as client:
        batch_id = await _batch(client, ["6511112222"] * 5 + ["6511111111"] * 2)
        settle = await settled_orchestrator(client, sim).retry_until_settled(
            batch_ids=[batch_id], timeout=300
        )
    # One per round in rounds 1 and 2; in round 3 one more, refused, teaches the cap.
    assert sim.posts.accepted_batch_retries[batch_id] == 2
    assert sim.posts.batch_retries[batch_id] == 3
    assert sum(sim.posts.retries.values()) == 0
    assert settle.calls_by_purpose()["batch_retries"] == 3
    assert settle.calls_by_purpose()["single_retries"] == 0
    notes = [n for r in settle.rounds for n in r.notes]
    assert any("instead of 5 single retries" in n and "2 message(s) not worth" in n for n in notes)


async def test_reads_switch_to_gets_when_few_are_pending(make_sim) -> None:
    sim = await make_sim(step_delays=DELAYS, clock=stopped_clock)
    async with client_for(sim) as client:
        recipients = [f"6591{i:06d}" for i in range(2500)] + ["6511112222"]
        batch_id = await _batch(client, recipients)
        settle = await settled_orchestrator(client, sim).retry_until_settled(
            batch_ids=[batch_id], timeout=300
        )
    routes = sim.stats().by_route
    listings = routes["GET /api/v2/campaigns/{campaign_id}/batch/{batch_id}/messages"]
    gets = routes["GET /api/v2/campaigns/{campaign_id}/messages/{message_id}"]
    # Round 1's first poll stops after page 1 (nothing there is final yet, so the older pages
    # have not moved on either); the next reads 2,501 messages in 3 pages. After each batch
    # retry one message is pending, so later rounds read it with a GET instead of 3 pages.
    assert listings == 1 + 3 and gets >= 2
    assert settle.calls == listings + gets + sim.posts.batch_retries[batch_id]
    assert settle.delivered == 2500 and settle.failed_for_good == {"recipient_unavailable": 1}


async def test_budget_share_leaves_headroom(make_sim) -> None:
    sim = await make_sim(rate_limit=20.0)
    failed = (pa.MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")
    ids = [sim.create_message(outcome=failed).id for _ in range(40)]
    async with client_for(sim, rate_limit=20.0) as client:
        report = await fast_orchestrator(client, budget_share=0.5).retry_messages(ids)
    assert report.counts[pa.Outcome.RETRIED] == 40
    times = sorted(sim.request_times())
    assert max_in_window(times) <= 10  # half of 20/s, on the server's record


async def test_singly_retried_ids_are_unread_since_their_post(make_sim) -> None:
    """The settle loop's own bookkeeping, not the planner's table: after its single retries,
    the IDs POSTed to are held as unread (no batch retry may fire on them until read)."""
    from postman_async._executor import Executor
    from postman_async._settle import SettleRun
    from postman_async.planner import RoundPlan
    from postman_async.reports import RoundReport

    failed = (pa.MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")
    sim = await make_sim()
    async with client_for(sim) as client:
        ids = [sim.create_message(outcome=failed).id for _ in range(3)]
        ex = Executor.for_client(client, clock=sim.clock, sleep=fast_sleep)
        run = SettleRun(ex, [], deadline=sim.clock() + 60, started=sim.clock(), on_progress=None)
        touched = await run.retry_singles(1, RoundPlan(single_retries=tuple(ids)), RoundReport(1))
    assert sorted(touched) == sorted(ids) and run.stale == set(ids)
    assert all(sim.posts.accepted_retries[i] == 1 for i in ids)


async def fast_sleep(seconds: float) -> None:
    """The retries need no waiting here."""
