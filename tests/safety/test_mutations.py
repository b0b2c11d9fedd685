"""Mutation proof: each safety check of the README's guarantees table passes against the real
client and FAILS against a deliberately broken one. A check never seen failing proves nothing.

- no double send: a session that re-sends a POST after a timeout (check_no_double_send);
- no double retry: an orchestrator whose de-duplication is off (check_no_double_retry);
- no batch flipped: a settle loop that ignores ``created`` (check_no_batch_flipped);
- at most ``rate`` calls in any second, no 429: the real limiter with its wait left out
  (check_budget).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import postman_async as pa
from postman_async import protocol, reports, rules
from postman_async.testing import Faults, PostmanSimulator

from ..checks import (
    check_budget,
    check_no_batch_flipped,
    check_no_double_retry,
    check_no_double_send,
)
from ..helpers import client_for, no_sleep, settled_orchestrator

FAIL = ("failure", "delivery_error", "recipient_unavailable")
Mutation = Callable[[pytest.MonkeyPatch], None]


def resend_posts_after_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Treat a POST like a GET: re-send it after a timeout (no idempotency key: a double send)."""
    monkeypatch.setattr(protocol.Request, "is_idempotent", property(lambda self: True))


def no_deduplication(monkeypatch: pytest.MonkeyPatch) -> None:
    """Claim every ID, duplicates too, and let a later result overwrite an earlier one."""
    monkeypatch.setattr(reports.RetryReport, "claim", lambda self, message_id: True)

    def record(self: reports.RetryReport, result: reports.MessageResult) -> None:
        self._results[result.message_id] = result

    monkeypatch.setattr(reports.RetryReport, "record", record)


def ignore_created(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fire batch retries without the unresolved check (the bug settle once had at its
    deadline)."""
    monkeypatch.setattr(rules, "is_unresolved", lambda status: False)


def limiter_never_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real limiter with its wait left out: it counts each grant on its answer clock and
    returns at once (an ``await`` of the schedule lost in a refactor)."""

    async def acquire(self: pa.RateLimiter, priority: pa.Priority = pa.Priority.HIGH) -> Any:
        assert self.answers is not None
        return self.answers.grant()

    monkeypatch.setattr(pa.RateLimiter, "acquire", acquire)


# -- scenarios: each runs a client against a simulator and returns it for the check ----------


async def timed_out_send(make_sim: Any, **_: Any) -> PostmanSimulator:
    sim = await make_sim(faults=Faults(latency=0.3, latency_rate=1.0))
    async with client_for(sim, timeout=0.1, max_retries=2, sleep=no_sleep) as client:
        with pytest.raises(pa.PostmanError):
            await client.send_message("6591234567", "english", {"body": "OTP 123456"})
    return sim


async def duplicate_ids(make_sim: Any, **_: Any) -> PostmanSimulator:
    sim = await make_sim(retry_failure_rate=1.0)  # a second retry would even be accepted
    ids = [sim.create_message(outcome=FAIL).id for _ in range(10)]
    async with client_for(sim) as client:
        await pa.RetryOrchestrator(client, concurrency=4).retry_messages([*ids, *ids])
    return sim


async def settle_deadline_with_created(make_sim: Any, **_: Any) -> PostmanSimulator:
    sim = await make_sim(step_delays=(1000.0, 0.5, 0.5, 1.0, 2.0))
    batch = sim.create_batch(["6511112222", "6591234567"], outcomes=[[FAIL], []])
    stuck = sim.messages[batch.message_ids[1]]
    stuck.attempts[-1].started = sim.now()  # created, for 1000 s
    async with client_for(sim) as client:
        settle = await settled_orchestrator(client, sim).retry_until_settled(
            batch_ids=[batch.id], timeout=30
        )
    assert settle.states[stuck.id].status == pa.MessageStatus.CREATED  # time ran out
    return sim


async def full_drive(make_sim: Any, limiter: Any = None) -> PostmanSimulator:
    sim = await make_sim(rate_limit=50.0)
    async with client_for(sim, rate_limit=50.0, max_retries=0, limiter=limiter) as client:
        await asyncio.gather(
            *(client.list_messages(page_size=1).fetch() for _ in range(75)),
            return_exceptions=True,
        )
    return sim


CASES = [
    ("no double send", timed_out_send, resend_posts_after_timeouts, check_no_double_send, {}),
    ("no double retry", duplicate_ids, no_deduplication, check_no_double_retry, {}),
    (
        "no batch flipped",
        settle_deadline_with_created,
        ignore_created,
        check_no_batch_flipped,
        {},
    ),
    (
        "budget never exceeded",
        full_drive,
        limiter_never_waits,
        lambda sim: check_budget(sim, 50),
        {},
    ),
]


@pytest.fixture
def patch() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        yield monkeypatch


@pytest.mark.parametrize(("name", "scenario", "mutation", "check", "broken"), CASES)
async def test_check_holds_for_the_real_client(
    make_sim: Any, name: str, scenario: Any, mutation: Any, check: Any, broken: Any
) -> None:
    sim = await scenario(make_sim)
    check(sim)


@pytest.mark.parametrize(("name", "scenario", "mutation", "check", "broken"), CASES)
async def test_check_fails_for_a_broken_client(
    make_sim: Any,
    patch: pytest.MonkeyPatch,
    name: str,
    scenario: Any,
    mutation: Mutation | None,
    check: Any,
    broken: dict[str, Any],
) -> None:
    if mutation is not None:
        mutation(patch)
    sim = await scenario(make_sim, **broken)
    patch.undo()
    with pytest.raises(AssertionError):
        check(sim)
