"""Reports and resume files hold recipients, values and message text: the CLI writes them
with mode 0600, also over a file that existed with a wider mode, whatever the umask."""

from __future__ import annotations

import argparse
import asyncio
import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from postman_async import cli
from postman_async._console import Output
from postman_async.cli import _retry
from postman_async.reports import MessageResult, Outcome, RetryReport
from postman_async.testing import SimulatorProcess

from .test_cli import run


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_retry_and_settle_reports_are_private(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    open_umask: None,
) -> None:
    ids_file = tmp_path / "ids.txt"
    with SimulatorProcess(
        "--rate-limit", "1000", "--time-scale", "100", "--failed-messages", "2",
        "--ids-out", str(ids_file),
    ) as sim:  # fmt: skip
        monkeypatch.setenv("POSTMAN_API_KEY", sim.api_key)
        monkeypatch.setenv("POSTMAN_CAMPAIGN_ID", sim.campaign_id)
        monkeypatch.setenv("POSTMAN_BASE_URL", sim.base_url)
        assert mode(ids_file) == 0o600  # --ids-out too
        retry_report, settle_report = tmp_path / "retry.json", tmp_path / "settle.json"
        for path in (retry_report, settle_report):
            path.write_text("an older report, readable by all")
            path.chmod(0o644)
        fast = ["--rate-limit", "1000"]
        code, _, err = run(
            capsys, "retry", "--ids-file", str(ids_file), "--report", str(retry_report), *fast
        )
        assert code == 0, err
        code, _, err = run(
            capsys, "settle", "--ids-file", str(ids_file), "--report", str(settle_report), *fast
        )
        assert code in (0, cli.EXIT_PARTIAL), err
    assert mode(retry_report) == 0o600 and '"retried": 2' in retry_report.read_text()
    assert mode(settle_report) == 0o600 and '"rounds"' in settle_report.read_text()


def test_the_default_resume_file_is_private(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_umask: None
) -> None:
    """Interrupted without --resume: the IDs left go to retry-left-<time>.txt, mode 0600,
    and never an ID whose POST may have been applied."""
    monkeypatch.chdir(tmp_path)
    report = RetryReport()
    for result in (
        MessageResult("m_retried", Outcome.RETRIED),
        MessageResult("m_in_flight", Outcome.CANCELLED, "in flight"),
        MessageResult("m_before_post", Outcome.CANCELLED, "before", applied=False),
    ):
        report.claim(result.message_id)
        report.record(result)

    async def rest() -> AsyncIterator[str]:
        yield "m_not_taken"

    args = argparse.Namespace(resume=None, report=None)
    left = asyncio.run(_retry._save(args, Output(), report, rest(), interrupted=True))
    [saved] = tmp_path.glob("retry-left-*.txt")
    assert args.resume == saved.name and left == 2
    assert saved.read_text().split() == ["m_before_post", "m_not_taken"]
    assert mode(saved) == 0o600


def test_a_report_owned_by_another_user_is_refused_before_any_request(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = tmp_path / "theirs.json"
    theirs.write_text("")
    monkeypatch.setattr(os, "geteuid", lambda: theirs.stat().st_uid + 1)
    code, _, err = run(capsys, "retry", "m1", "--report", str(theirs))
    assert code == cli.EXIT_INPUT and "cannot be made private" in err
