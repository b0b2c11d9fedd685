"""The demo at an accelerated rate: its summary must be true against the simulator."""

from __future__ import annotations

import json

import pytest

from postman_async import MessageStatus, cli
from postman_async.demo import DEMO_FAILING_NUMBERS, DemoOptions, run_demo


async def test_demo_summary_matches_ground_truth() -> None:
    options = DemoOptions(
        messages=400, rate=200.0, time_scale=50.0, poll_interval=0.05, failure_rate=0.15, seed=7
    )
    result = await run_demo(options)
    summary = result.summary()
    sim = result.simulator
    statuses = {i: sim.message_status(i) for i in sim.messages}
    assert summary["messages"] == len(statuses) == 410
    assert summary["delivered"] == sum(s == MessageStatus.SUCCESS for s in statuses.values())
    failed = [i for i, s in statuses.items() if s == MessageStatus.FAILURE]
    assert sum(summary["failed_for_good"].values()) == len(failed)
    assert summary["unsettled"] == 0
    assert summary["calls_spent"] == summary["server_requests"] == len(sim.request_log)
    assert summary["throttled_429"] == 0
    assert summary["max_calls_in_any_second"] <= 200
    for message_id in failed:  # failed for good: not worth retrying, or out of attempts
        message = sim.messages[message_id]
        code = message.attempts[-1].error_code
        assert code in ("recipient_invalid", "content_invalid") or len(message.attempts) == 3
    # One batch retry (1 call) beat single retries; the report says it also retried the
    # messages not worth retrying.
    notes = [n for r in result.settle.rounds for n in r.notes]
    assert any("not worth retrying" in n for n in notes)
    assert sum(len(r.batch_retries) for r in result.settle.rounds) >= 1
    invalid = [i for i in failed if sim.messages[i].recipient == DEMO_FAILING_NUMBERS[0]]
    assert invalid and all(
        sim.messages[i].attempts[-1].error_code == "recipient_invalid" for i in invalid
    )
    assert summary["calls_per_delivered_message"] < 0.2


def test_demo_command_json(capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["demo", "--messages", "60", "--rate", "200", "--time-scale", "50", "--json"])
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads(out)
    assert summary["messages"] == 70 and summary["throttled429"] == 0
    assert summary["delivered"] + sum(summary["failedForGood"].values()) == 70
    assert all("_" not in key for key in summary)  # one key convention: camelCase


def test_demo_rejects_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["demo", "--messages", "0"]) == cli.EXIT_INPUT
    assert "--messages" in capsys.readouterr().err
