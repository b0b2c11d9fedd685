"""What a new lease holder makes of a crashed holder's intent: one read decides (pure)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from postman_async.jobs.reconcile import Intent, decide_after_loss, reconcile
from postman_async.models import Message, MessageAttempt, MessageStatus
from postman_async.reports import MessageResult, MessageState

F, S, C = MessageStatus.FAILURE, MessageStatus.SUCCESS, MessageStatus.CREATED
AT = datetime(2026, 12, 2, 10, 0, 0, tzinfo=timezone.utc)
DATE = "Wed, 02 Dec 2026 10:00:20 GMT"  # the read, 20 s after AT


def message(status: MessageStatus, attempts: int, newest_at: datetime = AT) -> Message:
    tries = tuple(MessageAttempt(status=status, created_at=newest_at) for _ in range(attempts))
    return Message(id="m", latest_status=status, attempts=tries)


@pytest.mark.parametrize(
    ("baseline", "read", "outcome"),
    [
        ("1|failure", message(F, 2), "retried"),  # took, then failed again: never re-POST
        ("1|failure", message(C, 2), "retried"),
        ("1|failure", message(F, 1), None),  # did not take: POST now
        ("1|failure", message(S, 1), "skipped_not_in_failure"),  # moved on by someone else
        ("1|failure", None, "skipped_not_found"),
    ],
)
def test_with_a_baseline_the_attempt_count_decides(
    baseline: str, read: Message | None, outcome: str | None
) -> None:
    intent = Intent.parse(f"7|1000|{baseline}")
    verdict = reconcile("m", intent, read, server_date=DATE, seconds_since_intent=20.0)
    assert (verdict.result.outcome.value if verdict.result else None) == outcome


def test_without_a_baseline_time_decides_and_otherwise_the_outcome_is_unknown() -> None:
    intent = Intent.parse("7|1000||")
    assert intent.attempts is None and intent.status is None
    after = message(F, 2, newest_at=datetime(2026, 12, 2, 10, 0, 5, tzinfo=timezone.utc))
    before = message(F, 1, newest_at=datetime(2026, 12, 2, 9, 0, 0, tzinfo=timezone.utc))
    near = message(F, 2, newest_at=AT)
    # The intent sits 20 s before the read, at 10:00:00 on the server's clock.
    took = reconcile("m", intent, after, server_date=DATE, seconds_since_intent=20.0)
    assert took.result is not None and took.result.outcome.value == "retried"
    missed = reconcile("m", intent, before, server_date=DATE, seconds_since_intent=20.0)
    assert missed.result is None  # still failure from an hour before: POST
    unsure = reconcile("m", intent, near, server_date=DATE, seconds_since_intent=20.0)
    assert unsure.result is not None and unsure.result.outcome.value == "error"
    assert "outcome unknown" in (unsure.result.detail or "")


def test_the_settle_time_is_window_plus_timeout() -> None:
    assert Intent.parse("3|5000|1|failure").settled_at_ms(2.0, 30.0) == 37_000


SINCE = int(AT.timestamp() * 1000)  # when the lost job was created (Redis ms)
BEFORE = datetime(2026, 12, 2, 9, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("known", "read", "expected"),
    [
        (1, message(F, 2, BEFORE), "retried"),  # one more attempt than the input's count
        (1, message(S, 2, BEFORE), "retried"),
        (1, message(F, 1, AT), "post"),  # the count is exact: the time is not consulted
        (1, message(S, 1, BEFORE), "skipped_not_in_failure"),
        (None, message(F, 1, AT), "retried"),  # no count: an attempt after the lost job's start
        (None, message(F, 1, BEFORE), "post"),
        (None, message(C, 1, BEFORE), "skipped_not_in_failure"),
        (None, None, "skipped_not_found"),
        (1, None, "skipped_not_found"),
    ],
)
def test_a_job_submitted_again_after_a_loss_reads_before_it_posts(
    known: int | None, read: Message | None, expected: str
) -> None:
    state = None if known is None else MessageState("m", F, known)
    decided = decide_after_loss("m", read, since_ms=SINCE, known=state)
    if expected == "post":
        assert isinstance(decided, MessageState) and decided.attempts == 1
    else:
        assert isinstance(decided, MessageResult) and decided.outcome.value == expected
        if expected == "retried":
            assert "retried earlier (found by read-back" in decided.detail


@pytest.mark.parametrize(
    ("known", "read", "expected"),
    [
        (None, message(F, 1, BEFORE), "error"),  # no count, no start: nothing can tell
        (None, message(F, 1, AT), "error"),
        (None, message(S, 1, AT), "skipped_not_in_failure"),
        (1, message(F, 2, BEFORE), "retried"),  # the count still decides
        (1, message(F, 1, AT), "post"),
    ],
)
def test_a_lost_job_whose_start_is_unknown_claims_no_retry_and_posts_nothing_blind(
    known: int | None, read: Message, expected: str
) -> None:
    state = None if known is None else MessageState("m", F, known)
    decided = decide_after_loss("m", read, since_ms=0, known=state)
    if expected == "post":
        assert isinstance(decided, MessageState) and decided.attempts == 1
        return
    assert isinstance(decided, MessageResult) and decided.outcome.value == expected
    if expected == "error":
        assert decided.applied is None and "outcome unknown" in decided.detail
