"""The progress line shows a connection retry while it happens."""

from __future__ import annotations

import logging
import re

from postman_async._console import RecentRate, watching_trouble
from postman_async.cli._retry import RetryProgress
from postman_async.reports import MessageResult, Outcome, RetryReport


def test_a_retry_logged_by_the_session_reaches_the_progress_note() -> None:
    logger = logging.getLogger("postman_async")
    with watching_trouble() as trouble:
        assert trouble.note() == ""
        logger.debug("GET /x -> 200")  # not trouble
        assert trouble.note() == ""
        logger.info(
            "%s %s failed (%s), retrying in %.2fs (attempt %d)",
            "GET",
            "/campaigns/c/messages/m",
            "connection to 127.0.0.1:9 failed",
            0.5,
            2,
        )
        assert "connection to 127.0.0.1:9 failed" in trouble.note()
        assert "attempt 2" in trouble.note()
    assert logger.level == logging.NOTSET  # restored


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_call_rate_shown_never_exceeds_the_budget() -> None:
    """Calls at exactly the budget (10/s, no burst), sampled at odd moments: the rate shown
    is never above 10/s. Dividing by the time elapsed showed 13.3/s after 3 calls in 0.225 s."""
    clock = FakeClock()
    rate = RecentRate(0, clock=clock)
    calls, shown = 0, []
    for tick in range(1, 400):
        clock.now = 100.0 + tick * 0.0371  # samples between the calls
        calls = int((clock.now - 100.0) / 0.1) + 1  # one call every 0.1 s, from t=0
        shown.append(rate.update(calls))
    assert max(shown) <= 10.0
    assert shown[-1] >= 9.0  # and it is the rate, not an underestimate, once measured
    assert rate.seconds == 5


class FakeApi:
    calls = 0


def test_the_retry_eta_comes_from_what_was_measured() -> None:
    """No ETA before anything was measured (off a terminal it once said 98 s for a 22 s run);
    then the IDs left over the IDs done per second lately."""
    clock, api = FakeClock(), FakeApi()
    progress = RetryProgress(api, 1000, clock=clock)  # type: ignore[arg-type]
    report = RetryReport()
    assert "ETA" not in progress.line(report)
    for n in range(1, 101):  # 100 IDs in 10 s, one call each
        clock.now += 0.1
        api.calls = n
        report.claim(f"m{n}")
        report.record(MessageResult(f"m{n}", Outcome.RETRIED))
        line = progress.line(report)
    assert "100 of 1000 done" in line and "9.8 calls/s (last 5s)" in line
    eta = re.search(r"ETA (\d+)s", line)
    assert eta and 90 <= int(eta.group(1)) <= 93, line  # 900 left at about 10 a second
