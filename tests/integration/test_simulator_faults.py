"""The simulator's fault injection, and the client's behaviour under each fault."""

from __future__ import annotations

import asyncio

import pytest

import postman_async as pa
from postman_async.testing import Faults

from ..helpers import backoff_until_listening, client_for, no_sleep, wait_for_condition

FAIL = (pa.MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")


async def test_malformed_json_on_get_is_typed_and_retried_get_is_not(make_sim) -> None:
    sim = await make_sim(faults=Faults(malformed_json_rate=1.0))
    message = sim.create_message()
    async with client_for(sim, sleep=no_sleep) as client:  # the GET's backoffs: no waiting
        with pytest.raises(pa.MalformedResponseError):
            await client.get_message(message.id)
        with pytest.raises(pa.OutcomeUnknownError) as info:
            await client.send_message("6591234567", "english", {"body": "x"})
    assert info.value.applied is True  # HTTP 201 arrived: it was sent, do not send again
    assert sum(sim.posts.sends.values()) == 1


async def test_slow_responses_time_out_and_retry_is_reconciled(make_sim) -> None:
    sim = await make_sim(faults=Faults(latency=0.5, latency_rate=1.0))
    failed = sim.create_message(outcome=FAIL)
    async with client_for(sim, timeout=0.2, sleep=no_sleep) as client:
        # The retry POST is processed, but its answer comes after the client's timeout. The
        # read-back (also slow) times out too: the outcome is unknown, and nothing is re-sent.
        with pytest.raises(pa.OutcomeUnknownError):
            await client.retry_message(failed.id, attempts_before=1)
        # Only the POST is slow now: its answer comes after the timeout, the read-back's at once.
        sim.faults.only_methods = ("POST",)
        again = sim.create_message(outcome=FAIL)
        confirmed = await client.retry_message(again.id, attempts_before=1)
    assert confirmed.id == again.id
    assert sim.posts.retries[failed.id] == 1 and sim.posts.retries[again.id] == 1


async def test_5xx_and_resets_on_gets_are_retried(make_sim) -> None:
    sim = await make_sim(faults=Faults(server_error_rate=0.3, reset_before_rate=0.2), seed=5)
    message = sim.create_message()
    async with client_for(sim, max_retries=8, sleep=no_sleep) as client:
        for _ in range(10):
            assert (await client.get_message(message.id)).id == message.id
    statuses = {r.status for r in sim.request_log}
    assert {0, 200} <= statuses and statuses & {500, 502, 503}


async def test_competing_client_causes_429s_that_are_absorbed(make_sim) -> None:
    sim = await make_sim(rate_limit=20.0, faults=Faults(competing_share=0.5))
    ids = [sim.create_message(outcome=FAIL).id for _ in range(30)]
    async with client_for(sim, rate_limit=20.0) as client:
        report = await pa.RetryOrchestrator(client).retry_messages(ids)
    assert report.counts[pa.Outcome.RETRIED] == 30
    assert sim.stats().throttled > 0  # the competitor took half the budget
    assert sim.stats().competitor_admitted > 0
    assert all(sim.posts.retries[i] == 1 for i in ids)


async def test_restart_mid_run(make_sim) -> None:
    sim = await make_sim(rate_limit=50.0)
    ids = [sim.create_message(outcome=FAIL).id for _ in range(40)]
    port = sim.port
    async with client_for(sim, rate_limit=50.0, sleep=backoff_until_listening(sim)) as client:
        run = asyncio.ensure_future(pa.RetryOrchestrator(client, concurrency=4).retry_messages(ids))
        await wait_for_condition(lambda: sum(sim.posts.retries.values()) >= 10, "10 retries")
        await sim.restart(downtime=0.2)
        report = await run
    assert sim.port == port
    assert len(report) == 40
    for result in report:  # state survived the restart; no message was retried twice
        assert sim.posts.retries[result.message_id] <= 1
        if result.outcome is pa.Outcome.RETRIED:
            assert sim.posts.accepted_retries[result.message_id] == 1


async def test_csv_over_the_size_limit(make_sim) -> None:
    sim = await make_sim(max_csv_bytes=1000)
    rows = [
        {"recipient": f"6591{i:06d}", "language": "english", "body": "x" * 50} for i in range(40)
    ]
    async with client_for(sim) as client:
        with pytest.raises(pa.ParameterInvalidError, match="File too large"):
            await client.send_batch(rows)
    assert sim.batches == {}


async def test_admin_stats_endpoint(make_sim) -> None:
    import aiohttp

    sim = await make_sim(rate_limit=2.0)
    failed = sim.create_message(outcome=FAIL)
    async with client_for(sim, max_retries=0) as client:
        await client.retry_message(failed.id)
    url = sim.base_url.replace("/api/v2", "/__simulator__/stats")
    params = {"campaign": sim.campaign_id, "times": "1", "posts": "1"}
    async with aiohttp.ClientSession() as raw, raw.get(url, params=params) as resp:
        stats = await resp.json()
    assert stats["requests"] == 1 and stats["throttled"] == 0 and stats["maxPerSecond"] == 1
    assert stats["retryPosts"] == 1 and stats["maxRetryPostsPerMessage"] == 1
    assert len(stats["times"]) == 1
    assert stats["posts"]["retries"] == {failed.id: 1}
    assert stats["posts"]["acceptedRetries"] == {failed.id: 1}
    assert sim.stats().requests == 1  # reading the stats is not itself a campaign request
