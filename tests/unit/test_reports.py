"""What a retry report says may be fed back, and what must be checked first: an ID whose
retry may have been applied is never among ``failures()``."""

from __future__ import annotations

import asyncio
import json

import pytest

import postman_async as pa
from postman_async.reports import MessageResult, Outcome, RetryReport
from postman_async.testing import Faults

from ..helpers import client_for, fast_orchestrator, wait_for_condition

FAIL = (pa.MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")


def unknown(applied: bool | None) -> pa.OutcomeUnknownError:
    return pa.OutcomeUnknownError("retry of m: outcome unknown", applied=applied)


@pytest.mark.parametrize(
    ("result", "applied"),
    [
        (MessageResult("m", Outcome.RETRIED, "status created"), True),
        (MessageResult("m", Outcome.NOT_IN_FAILURE), False),
        (MessageResult("m", Outcome.NOT_FOUND), False),
        (MessageResult("m", Outcome.EXHAUSTED), False),
        (MessageResult("m", Outcome.BATCH_BLOCKED), False),
        (MessageResult("m", Outcome.CANCELLED, "cancelled in flight"), None),
        (MessageResult("m", Outcome.CANCELLED, "before its POST", applied=False), False),
        (MessageResult("m", Outcome.ERROR, error=unknown(None)), None),
        (MessageResult("m", Outcome.ERROR, error=unknown(False)), False),
        (MessageResult("m", Outcome.ERROR, error=pa.PostmanTimeoutError("x")), False),
        (MessageResult("m", Outcome.ERROR, error=pa.ValidationError("message_id", "x")), False),
        (MessageResult("m", Outcome.ERROR, "worker crash: outcome unknown"), None),
        (MessageResult("m", Outcome.ERROR, "said so", applied=False), False),
    ],
)
def test_applied_follows_the_outcome_unless_given(
    result: MessageResult, applied: bool | None
) -> None:
    assert result.applied is applied
    assert result.uncertain is (applied is None)
    assert result.to_dict().get("uncertain", False) is (applied is None)


def report_of(*results: MessageResult) -> RetryReport:
    report = RetryReport()
    for result in results:
        assert report.claim(result.message_id)
        report.record(result)
    return report


def test_failures_never_hold_an_id_whose_retry_may_have_been_applied() -> None:
    report = report_of(
        MessageResult("retried", Outcome.RETRIED),
        MessageResult("timeout", Outcome.ERROR, error=pa.PostmanTimeoutError("x")),
        MessageResult("read-back-not-applied", Outcome.ERROR, error=unknown(False)),
        MessageResult("unknown", Outcome.ERROR, error=unknown(None)),
        MessageResult("in-flight", Outcome.CANCELLED, "cancelled in flight"),
        MessageResult("before-post", Outcome.CANCELLED, "before", applied=False),
        MessageResult("bad", Outcome.ERROR, error=pa.ValidationError("message_id", "x")),
    )
    assert report.failures() == ["timeout", "read-back-not-applied", "before-post"]
    assert report.uncertain() == ["unknown", "in-flight"]
    assert not set(report.failures()) & set(report.uncertain())
    assert report.uncertain_count == 2 and "uncertain=2" in report.summary()
    data = json.loads(json.dumps(report.to_dict()))
    assert data["summary"]["uncertain"] == 2
    assert [r["messageId"] for r in data["results"] if r.get("uncertain")] == [
        "unknown",
        "in-flight",
    ]


def test_a_report_with_a_sink_still_counts_the_uncertain() -> None:
    seen: list[MessageResult] = []
    report = RetryReport(sink=seen.append)
    for result in (
        MessageResult("a", Outcome.ERROR, error=unknown(None)),
        MessageResult("b", Outcome.RETRIED),
    ):
        report.claim(result.message_id)
        report.record(result)
    assert report.uncertain_count == 1 and report.uncertain() == [] and len(seen) == 2


async def test_a_cancelled_run_tells_posts_in_flight_from_ids_never_posted(make_sim) -> None:
    """Cancelled while some POSTs are in flight (answers delayed) and other workers wait for
    a token: each ID the server processed a POST for is uncertain, and every ID that
    ``failures()`` offers to feed back had no POST at all (the server's own record)."""
    sim = await make_sim(rate_limit=1000.0, faults=Faults(latency=1.0))
    ids = [sim.create_message(outcome=FAIL).id for _ in range(12)]
    async with client_for(sim, rate_limit=4.0) as client:
        orchestrator = fast_orchestrator(client, concurrency=6)
        run = asyncio.ensure_future(orchestrator.retry_messages(ids))
        await wait_for_condition(lambda: sum(sim.posts.retries.values()) >= 2, "two POSTs")
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    # Stopped, the server's record is final: a POST written just before the cancel has
    # landed in it by now, or never will.
    await sim.stop()
    report = orchestrator.report
    assert report is not None and len(report) == 6 and report.pending == []
    posted = {i for i in ids if sim.posts.retries[i]}
    assert posted and posted <= set(report.uncertain())
    again = report.failures()
    assert again, "workers waiting for a token were cancelled before their POST"
    assert all(sim.posts.retries[i] == 0 for i in again)
    assert all(report[i].outcome is Outcome.CANCELLED for i in again)
