"""The load-test environment (reference §1): up to 200 calls per second, and messages that stop
at the aggregator and stay pending. A load-test run against the simulator's load-test mode:
never more than 200 calls in any sliding second at the server, and waits and settles that stop
as soon as every message is pending there, saying so, instead of polling to their timeout.
Time is the simulator's (``sim_time``): no wall-clock assertion."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from postman_async import MessageStatus, PostmanClient, RetryOrchestrator, ValidationError
from postman_async.environments import LOAD_TEST_NOTE, LOADTEST
from postman_async.testing import SimulatorProcess

from ..helpers import sim_time

ROWS = [{"recipient": f"6591{n:06d}", "language": "english", "body": "x"} for n in range(1000)]


def counting_sleeps(sim: Any, slept: list[float]) -> dict[str, Any]:
    """The simulator's time (each sleep advances it), with every sleep recorded."""
    timing = sim_time(sim)

    async def sleep(delay: float) -> None:
        slept.append(delay)
        await timing["sleep"](delay)

    return {**timing, "sleep": sleep}


def load_test_client(sim: Any, **options: Any) -> PostmanClient:
    return PostmanClient(
        api_key=sim.api_key,
        campaign_id=sim.campaign_id,
        base_url=sim.base_url,  # the simulator stands in for loadtest.postman.gov.sg
        environment="loadtest",
        **options,
    )


async def test_a_load_test_at_200_per_second_then_a_prompt_settle(make_sim: Any) -> None:
    sim = await make_sim(load_test=True, rate_limit=None)  # the load-test default: 200/s
    assert sim.rate_limit == LOADTEST.rate_limit == 200
    async with load_test_client(sim) as client:
        assert client.rate_limit == 200  # the environment's default rate
        sent = await asyncio.gather(
            *(client.send_message(f"6598{n:06d}", "english", {"body": "x"}) for n in range(600))
        )
        batch = await client.send_batch(ROWS)
        stats = sim.stats()
        assert stats.requests == 601 and stats.throttled == 0
        assert stats.max_per_second <= 200  # the server's count, in any sliding second

        singles = [m.id for m in sent[:10]]
        slept: list[float] = []
        orchestrator = RetryOrchestrator(client, **counting_sleeps(sim, slept))
        settle = await orchestrator.retry_until_settled(
            singles, batch_ids=[batch.batch_id], timeout=3600
        )
    assert len(settle.states) == 1010 and settle.delivered == 0
    assert sorted(settle.unsettled) == sorted(settle.states)  # pending is not final ...
    assert {s.status for s in settle.states.values()} == {MessageStatus.SENDING}
    assert len(settle.rounds) == 1 and settle.rounds[-1].notes[-1].startswith(LOAD_TEST_NOTE)
    # ... and it stopped as soon as every message was at the aggregator (the lifecycle takes
    # 1.5 s to get there): at most one poll interval waited, not the hour's timeout.
    assert sum(slept) <= orchestrator.executor.poll_interval
    assert settle.calls <= 2 * (1 + len(singles))  # at most two reads of each
    assert sim.stats().max_per_second <= 200


async def test_wait_for_outcomes_stops_at_the_aggregator(make_sim: Any) -> None:
    sim = await make_sim(load_test=True)
    message = sim.create_message()  # no outcome given: it stops at the aggregator
    sim.advance(3600)
    assert sim.message_status(message.id) == "sending"  # never success, however long
    slept: list[float] = []
    async with load_test_client(sim) as client:
        outcomes = await RetryOrchestrator(client, **counting_sleeps(sim, slept)).wait_for_outcomes(
            [message.id], timeout=300
        )
    assert outcomes.pending == [message.id] and outcomes.calls == 1
    assert slept == []  # the first read showed it: nothing to wait for


async def test_elsewhere_the_same_messages_are_polled_to_the_timeout(make_sim: Any) -> None:
    """The environment is what tells: a client of another environment waits its timeout."""
    sim = await make_sim(load_test=True)
    message = sim.create_message()
    slept: list[float] = []
    async with PostmanClient(
        api_key=sim.api_key, campaign_id=sim.campaign_id, base_url=sim.base_url, rate_limit=1000
    ) as client:
        outcomes = await RetryOrchestrator(client, **counting_sleeps(sim, slept)).wait_for_outcomes(
            [message.id], timeout=120
        )
    assert outcomes.pending == [message.id] and sum(slept) > 100  # to its timeout


def test_the_cli_settles_a_load_test_and_says_so(tmp_path: Path) -> None:
    with SimulatorProcess("--load-test", "--time-scale", "100") as sim:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("POSTMAN_")},
            "POSTMAN_API_KEY": sim.api_key,
            "POSTMAN_CAMPAIGN_ID": sim.campaign_id,
            "POSTMAN_BASE_URL": sim.base_url,
            "XDG_CACHE_HOME": str(tmp_path),
        }
        cli = [sys.executable, "-m", "postman_async"]
        sent = subprocess.run(
            [*cli, "send", "6591234567", "--value", "body=hi", "--json"],
            env={**env, "POSTMAN_ENVIRONMENT": "loadtest"},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
        message_id = json.loads(sent.stdout)["id"]
        sim.advance(60)
        settled = subprocess.run(
            [*cli, "settle", message_id, "--environment", "loadtest"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert settled.returncode == 0, settled.stdout + settled.stderr
    assert "load test: statuses stay pending: 1 messages are pending at the aggregator" in (
        settled.stdout
    )


@pytest.mark.parametrize("bad", ["staging", "LOADTEST"])
def test_an_unknown_environment_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="environment"):
        PostmanClient(api_key="key_test_x", campaign_id="campaign_1", environment=bad)
