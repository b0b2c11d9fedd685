"""Input files that cannot be IDs or a CSV are refused with exit code 2 and one line, having
read no more than a bounded amount: non-UTF-8 bytes, a device, a directory, a line or a file
over the limit. Nothing here reaches a server (there is none listening)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from postman_async import ValidationError, _csv_input, cli
from postman_async.cli import _common
from postman_async.testing.process import free_port

from .test_cli import run


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "POSTMAN_API_KEY": "key_test_x",
        "POSTMAN_CAMPAIGN_ID": "campaign_1",
        "POSTMAN_BASE_URL": f"http://127.0.0.1:{free_port()}/api/v2",  # nobody listens
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("POSTMAN_API_KEY_FILE", raising=False)
    return {**os.environ, **values}


def refused(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Exit 2 with one line on stderr, before any work (nothing on stdout)."""
    code, out, err = run(capsys, *argv)
    assert code == cli.EXIT_INPUT, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert out == ""
    return err


@pytest.mark.parametrize("command", ["retry", "settle"])
@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"message_1\nmessage_2\nmessage_\xff\xfe3\n", "line 3 is not UTF-8 text"),
        (b"message_1\n" + b"a" * 5000 + b"\nmessage_3\n", "line 2 is longer than 4096 bytes"),
        (b"# comment\n\n" + b"a" * 200_000, "line 3 is longer than 4096 bytes"),  # no newline
    ],
)
def test_ids_file_with_bad_lines_refused_naming_the_line(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    command: str,
    content: bytes,
    fragment: str,
) -> None:
    path = tmp_path / "ids.txt"
    path.write_bytes(content)
    err = refused(capsys, command, "--ids-file", str(path))
    assert fragment in err and "invalid ids_file" in err


def test_a_bad_line_far_into_an_ids_file_stops_retry_before_any_call(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The first 6,000 IDs fill more than one chunk: a run that started on them would print
    a summary. Counting the file first reads it through, so the bad line stops it before."""
    path = tmp_path / "ids.txt"
    path.write_bytes(b"".join(b"message_%05d\n" % n for n in range(6000)) + b"\xc3\x28\n")
    assert path.stat().st_size > _common.READ_CHUNK
    argv = ["retry", "--ids-file", str(path), "--rate-limit", "1000", "--max-retries", "0"]
    assert "line 6001 is not UTF-8 text" in refused(capsys, *argv)


@pytest.mark.parametrize("command", ["retry", "settle"])
@pytest.mark.parametrize(("path", "fragment"), [("/dev/zero", "a device"), ("/", "a directory")])
def test_ids_file_that_is_no_file_refused_unread(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    path: str,
    fragment: str,
) -> None:
    monkeypatch.setattr(_common, "open", _never_opened, raising=False)
    err = refused(capsys, command, "--ids-file", path)
    assert fragment in err and path in err


def _never_opened(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"opened {args}")


def test_ids_from_a_fifo_are_read(tmp_path: Path) -> None:
    fifo = tmp_path / "ids.fifo"
    os.mkfifo(fifo)

    def write() -> None:
        with open(fifo, "wb") as handle:
            handle.write(b"\xef\xbb\xbfmessage_1\r\n# a comment\n\n  message_2  \nmessage_3")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    reader = _common.LineReader.open(str(fifo))
    try:
        assert not reader.regular
        lines: list[str] = []
        while batch := reader.next_batch():
            lines += batch
    finally:
        reader.close()
        writer.join()
    assert lines == ["message_1", "message_2", "message_3"]


class Endless:
    """An input that never ends and never has a newline; counts what was read."""

    def __init__(self) -> None:
        self.read = 0

    def read1(self, size: int) -> bytes:
        self.read += size
        return b"\0" * size


def test_an_endless_line_is_refused_after_a_bounded_read() -> None:
    source = Endless()
    reader = _common.LineReader(source, "stdin", regular=False, owned=False)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="line 1 is longer"):
        reader.next_batch()
    assert source.read <= _common.MAX_LINE_BYTES + _common.READ_CHUNK


@pytest.mark.parametrize(
    ("stdin", "fragment"),
    [
        ("/dev/zero", "stdin: line 1 is longer than 4096 bytes"),
        (b"message_1\n\xff\n", "stdin: line 2 is not UTF-8 text"),
    ],
)
def test_ids_from_stdin_are_bounded_and_checked(
    env: dict[str, str], tmp_path: Path, stdin: str | bytes, fragment: str
) -> None:
    argv = [sys.executable, "-m", "postman_async", "retry", "--ids-file", "-", "--max-retries", "0"]
    if isinstance(stdin, str):
        with open(stdin, "rb") as handle:
            result = subprocess.run(argv, stdin=handle, env=env, capture_output=True, timeout=60)
    else:
        result = subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=60)
    err = result.stderr.decode()
    assert result.returncode == cli.EXIT_INPUT, err
    assert fragment in err and "Traceback" not in err


def test_send_batch_refuses_a_device_and_a_directory(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_csv_input, "open", _never_opened, raising=False)
    assert "not a regular file" in refused(capsys, "send-batch", "/dev/zero")
    assert "a directory" in refused(capsys, "send-batch", "/")


# A CSV over 40 MB is split, not refused, and a pipe is bounded at 1 GiB: both are tested in
# tests/cli/test_cli_send.py and tests/integration/test_batch_split.py.


def test_send_batch_names_the_line_that_is_not_utf8(
    env: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(b"recipient,language,body\n6591234567,english,hi\n6591234568,english,\xe9\n")
    assert "not UTF-8 text (line 3)" in refused(capsys, "send-batch", str(path))


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "a device"),
        (b"key_test_\xff\n", "is not UTF-8 text"),
        (b"k" * 5000, "larger than 4096 bytes"),
    ],
)
def test_a_key_file_that_is_no_key_file_is_refused_unechoed(
    env: dict[str, str],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    content: bytes | None,
    fragment: str,
) -> None:
    path = "/dev/zero"
    if content is not None:
        path = str(tmp_path / "key")
        Path(path).write_bytes(content)
    else:
        monkeypatch.setattr(_common, "open", _never_opened, raising=False)
    err = refused(capsys, "status", "message_1", "--api-key-file", path)
    assert fragment in err and "key_test_" not in err and "kkkk" not in err
