"""Property: whatever the mix of states, duplicates and faults, every distinct input ID is in
the report exactly once with the outcome its kind calls for (or a typed error where a fault
made it ambiguous), the report agrees with the simulator's record of every processed POST
(refused ones included), and no message receives more than one retry POST in a run."""

from __future__ import annotations

import asyncio
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import postman_async as pa
from postman_async.testing import Faults, PostmanSimulator

from ..helpers import client_for, no_sleep

KINDS = ("failed", "failed_exhausted", "delivered", "in_flight", "missing")
#: What each kind must come out as when no fault touched it.
EXPECTED = {
    "failed": pa.Outcome.RETRIED,
    "failed_exhausted": pa.Outcome.EXHAUSTED,
    "delivered": pa.Outcome.NOT_IN_FAILURE,
    "in_flight": pa.Outcome.NOT_IN_FAILURE,
    "missing": pa.Outcome.NOT_FOUND,
}
OUTCOMES = {
    "failed": (pa.MessageStatus.FAILURE, "delivery_error", "recipient_unavailable"),
    "failed_exhausted": (pa.MessageStatus.FAILURE, "server_error", "server_unknown_error"),
    "delivered": (pa.MessageStatus.SUCCESS, None, None),
}

scenario = st.fixed_dictionaries(
    {
        "kinds": st.lists(st.sampled_from(KINDS), min_size=1, max_size=25),
        "duplicates": st.lists(st.integers(min_value=0, max_value=24), max_size=8),
        "server_error_rate": st.sampled_from([0.0, 0.1, 0.3]),
        "reset_before_rate": st.sampled_from([0.0, 0.05]),
        "reset_after_rate": st.sampled_from([0.0, 0.05, 0.2]),
        "competing_share": st.sampled_from([0.0, 0.3]),
        "seed": st.integers(min_value=0, max_value=10_000),
    }
)


async def _run(case: dict) -> None:
    sim = PostmanSimulator(
        rate_limit=200.0,
        time_scale=1.0,
        seed=case["seed"],
        faults=Faults(
            server_error_rate=case["server_error_rate"],
            reset_before_rate=case["reset_before_rate"],
            reset_after_rate=case["reset_after_rate"],
            competing_share=case["competing_share"],
        ),
    )
    ids: list[str] = []
    kinds: dict[str, str] = {}
    for kind in case["kinds"]:
        if kind == "missing":
            message_id = f"message_missing_{len(ids)}"
        elif kind == "in_flight":
            message_id = sim.create_message(age=0.0).id  # created; the clock is not advanced
        else:
            attempts = 3 if kind == "failed_exhausted" else 1
            message_id = sim.create_message(outcome=OUTCOMES[kind], attempts=attempts).id
        ids.append(message_id)
        kinds[message_id] = kind
    stream = ids + [ids[i % len(ids)] for i in case["duplicates"]]
    faults = any(case[k] for k in ("server_error_rate", "reset_before_rate", "reset_after_rate"))
    async with (
        sim,
        client_for(sim, timeout=5.0, sleep=no_sleep) as client,
    ):
        report = await pa.RetryOrchestrator(client, concurrency=6).retry_messages(stream)
    assert report.finished
    assert sorted(r.message_id for r in report) == sorted(set(ids))
    assert len(report) == len(set(ids))
    assert report.duplicates == len(stream) - len(set(ids))
    for message_id, kind in kinds.items():
        result = report[message_id]
        posts = sim.posts.retries[message_id]
        assert posts <= 1, (message_id, posts)  # every processed POST, refused ones too
        accepted = sim.posts.accepted_retries[message_id]
        if result.outcome is pa.Outcome.ERROR:
            # Only a fault can make it ambiguous; never re-POSTed, the error is typed.
            assert faults and isinstance(result.error, pa.PostmanError), result
            continue
        assert result.outcome is EXPECTED[kind], (kind, result)
        assert accepted == (1 if result.outcome is pa.Outcome.RETRIED else 0)
        if kind in ("failed", "failed_exhausted", "delivered", "in_flight") and not faults:
            assert posts == 1  # one call per message: the POST's answer tells eligibility


@settings(
    max_examples=200 if os.environ.get("CI") else 25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(case=scenario)
def test_every_id_once_and_no_double_retry(case: dict) -> None:
    asyncio.run(_run(case))
