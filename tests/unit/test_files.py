"""Files holding personal data are private to their owner (mode 0600), whatever the umask
and whatever mode a file had before."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from postman_async import _files, sinks
from postman_async.reports import MessageResult, Outcome, RetryReport


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The loosest umask: whatever is private is so by its own doing."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_file_is_created_0600(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "new.json"
    with _files.open_private(path) as handle:
        handle.write("{}")
    assert mode(path) == 0o600 and path.read_text() == "{}"


def test_an_existing_file_is_made_0600_and_emptied(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "old.json"
    path.write_text("old content, longer than the new")
    path.chmod(0o666)
    with _files.open_private(path) as handle:
        handle.write("new")
    assert mode(path) == 0o600 and path.read_text() == "new"


def test_a_file_that_cannot_be_made_private_is_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "theirs.json"
    path.write_text("theirs")
    path.chmod(0o644)

    def refuse(fd: int, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(_files.os, "fchmod", refuse)
    with pytest.raises(PermissionError, match="cannot make it private"):
        _files.open_private(path)
    assert path.read_text() == "theirs" and mode(path) == 0o644


def test_a_device_is_written_without_touching_its_mode() -> None:
    before = os.stat("/dev/null").st_mode
    with _files.open_private("/dev/null") as handle:
        handle.write("nothing")
    assert os.stat("/dev/null").st_mode == before


def test_reports_and_result_sinks_are_private(tmp_path: Path, open_umask: None) -> None:
    report = RetryReport()
    report.claim("m1")
    report.record(MessageResult("m1", Outcome.RETRIED, "status created"))
    written = tmp_path / "report.json"
    written.write_text("")
    written.chmod(0o644)
    report.write_json(written)
    assert mode(written) == 0o600 and json.loads(written.read_text())["summary"]["messages"] == 1
    ndjson = tmp_path / "results.ndjson"
    with sinks.as_sink(ndjson) as sink:
        sink(MessageResult("m1", Outcome.RETRIED))
    assert mode(ndjson) == 0o600 and "m1" in ndjson.read_text()
