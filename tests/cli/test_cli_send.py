"""``send`` and ``send-batch`` say what happened to a send whose answer was lost, with an exit
code each, against the simulator (in a thread of this process, so a test can lose answers)
over loopback HTTP, judged by its record of every processed POST.

0: created (also "created (confirmed by read-back)"); 6: not sent (not found at HH:MM:SS);
1: outcome unknown (the candidates listed); 2: a file already uploaded (the batch named);
7: a split upload stopped part-way (the batches sent printed on stdout).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postman_async import _csv_input, _csv_split, cli
from postman_async.testing import Faults, PostmanSimulator

from .test_cli import run

RECIPIENT = "6591234567"
POST_ONLY = ("POST",)
CLOCK = re.compile(r"not sent \(not found at \d\d:\d\d:\d\d\)")


class ThreadedSimulator:
    """A simulator serving from its own event loop in a thread, for the CLI's ``asyncio.run``."""

    def __init__(self, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.options = {"rate_limit": 1000.0, **options}

    def __enter__(self) -> PostmanSimulator:
        self.thread.start()
        self.sim = self._call(self._start())
        return self.sim

    async def _start(self) -> PostmanSimulator:
        return await PostmanSimulator(**self.options).start()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def __exit__(self, *exc_info: object) -> None:
        self._call(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()


@pytest.fixture
def sim(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[PostmanSimulator]:
    with ThreadedSimulator() as simulator:
        monkeypatch.setenv("POSTMAN_API_KEY", simulator.api_key)
        monkeypatch.setenv("POSTMAN_CAMPAIGN_ID", simulator.campaign_id)
        monkeypatch.setenv("POSTMAN_BASE_URL", simulator.base_url)
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        for name in ("POSTMAN_API_KEY_FILE", "POSTMAN_ENVIRONMENT"):
            monkeypatch.delenv(name, raising=False)
        yield simulator


def people(tmp_path: Path, count: int, name: str = "people.csv", body: str = "hello") -> Path:
    path = tmp_path / name
    lines = "".join(f"6591{i:06d},english,{body} {i}\n" for i in range(count))
    path.write_text("recipient,language,body\n" + lines)
    return path


def uploads(sim: PostmanSimulator) -> int:
    return sum(sim.posts.batch_uploads.values())


def send(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return run(capsys, "send", RECIPIENT, "--value", "body=Your code is 1234")


# -- send ------------------------------------------------------------------------------------


def test_send_says_created(sim: PostmanSimulator, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = send(capsys)
    assert code == 0, err
    assert out.startswith("created") and "confirmed by read-back" not in out


def test_send_whose_answer_was_lost_says_confirmed_by_read_back(
    sim: PostmanSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.faults = Faults(reset_after_rate=1.0, only_methods=POST_ONLY)
    code, out, err = send(capsys)
    assert code == 0, err
    assert "created (confirmed by read-back)" in out and RECIPIENT in out
    assert sum(sim.posts.sends.values()) == 1


def test_send_the_server_never_saw_says_not_sent_and_when(
    sim: PostmanSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    sim.faults = Faults(reset_before_rate=1.0, only_methods=POST_ONLY)
    code, out, err = send(capsys)
    assert code == cli.EXIT_NOT_FOUND == 6, err
    assert CLOCK.search(err) and "******4567" in err and RECIPIENT not in err
    assert out == "" and sum(sim.posts.sends.values()) == 0


def test_send_with_several_candidates_lists_them(
    sim: PostmanSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    other = sim.create_message(RECIPIENT, values={"body": "Your code is 1234"}, age=0.5)
    sim.faults = Faults(reset_after_rate=1.0, only_methods=POST_ONLY)
    code, _, err = send(capsys)
    assert code == cli.EXIT_OTHER == 1, err
    assert "outcome unknown" in err and "2 candidate(s) could be it" in err and other.id in err
    assert "check them before sending again" in err and "Traceback" not in err
    assert sum(sim.posts.sends.values()) == 1


# -- send-batch ------------------------------------------------------------------------------


def test_a_file_sent_twice_is_refused_then_sent_with_again(
    sim: PostmanSimulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = str(people(tmp_path, 3))
    code, out, err = run(capsys, "send-batch", path)
    assert code == 0, err
    batch_id = out.strip()
    assert f"batch {batch_id} created from {path}" in err
    code, out, err = run(capsys, "send-batch", path)
    assert code == cli.EXIT_INPUT == 2 and out == ""
    assert f"already uploaded: batch {batch_id}" in err and "--again" in err
    assert "guard_window" not in err  # a CLI user is told the option, not the argument
    assert uploads(sim) == 1
    code, out, err = run(capsys, "send-batch", path, "--again")
    assert code == 0, err
    assert out.strip() != batch_id and uploads(sim) == 2
    code, _, err = run(capsys, "send-batch", path, "--guard-window", "0")
    assert code == 0 and uploads(sim) == 3


def test_a_batch_whose_answer_was_lost_says_confirmed_by_read_back(
    sim: PostmanSimulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sim.faults = Faults(reset_after_rate=1.0, only_methods=POST_ONLY)
    code, out, err = run(capsys, "send-batch", str(people(tmp_path, 3)))
    assert code == 0, err
    assert f"batch {out.strip()} created (confirmed by read-back)" in err and uploads(sim) == 1


def test_a_batch_the_server_never_saw_says_not_sent(
    sim: PostmanSimulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    sim.faults = Faults(reset_before_rate=1.0, only_methods=POST_ONLY)
    code, out, err = run(capsys, "send-batch", str(people(tmp_path, 3)), "--again")
    assert code == cli.EXIT_NOT_FOUND and out == "" and CLOCK.search(err), err
    assert uploads(sim) == 0


def test_rows_over_the_file_limit_are_split_into_batches(
    sim: PostmanSimulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = str(people(tmp_path, 25))
    code, out, err = run(capsys, "send-batch", path, "--max-batch-rows", "20")
    assert code == 0, err
    ids = out.split()
    assert len(ids) == 2 and set(ids) == set(sim.batches)
    assert f"batch {ids[0]} created from {path}, rows 1-20" in err
    assert f"batch {ids[1]} created from {path}, rows 21-25" in err
    assert "split into 2 batches (25 rows)" in err
    code, out, err = run(capsys, "send-batch", path, "--max-batch-rows", "20", "--json")
    assert code == cli.EXIT_INPUT and "part 1 of 2" in err  # the guard: already uploaded


def test_a_file_over_the_byte_limit_is_split_not_refused(
    sim: PostmanSimulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_csv_split, "MAX_PART_BYTES", 2000)  # as 40 MB would be, in small
    path = people(tmp_path, 400)
    assert path.stat().st_size > 4 * 2000
    code, out, err = run(capsys, "send-batch", str(path), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert len(result["parts"]) == len(sim.batches) >= 4
    assert sum(p["rows"] for p in result["parts"]) == 400
    assert result["batchId"] == result["parts"][0]["batchId"]


def test_a_split_upload_stopped_part_way_prints_the_batches_sent(
    sim: PostmanSimulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "people.csv"
    rows = [f"6591{i:06d},english,hello {i}" for i in range(30)]
    rows[25] = f"6591000025,english,{'x' * 1200}"  # over the server's body limit
    path.write_text("recipient,language,body\n" + "\n".join(rows) + "\n")
    code, out, err = run(capsys, "send-batch", str(path), "--max-batch-rows", "20")
    assert code == cli.EXIT_PARTIAL == 7, err
    (sent,) = out.split()
    assert set(sim.batches) == {sent} and uploads(sim) == 1
    assert "stopped at part 2 of 2" in err and "parameter_invalid" in err


def test_a_pipe_is_read_whole_before_anything_is_sent_and_bounded(
    sim: PostmanSimulator,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pipe cannot be read twice: it is copied (privately) and checked whole first, up to
    ``MAX_SPOOL_BYTES`` (1 GiB; 1 MiB here), and an endless one is refused at that bound."""
    monkeypatch.setattr(_csv_input, "MAX_SPOOL_BYTES", 1 << 20)
    fifo = tmp_path / "people.fifo"
    os.mkfifo(fifo)

    def write(endless: bool) -> None:
        block = b"".join(b"6591%06d,english,hello\n" % i for i in range(1000))
        try:
            with open(fifo, "wb") as handle:
                handle.write(b"recipient,language,body\n" + block[:2400])
                while endless:
                    handle.write(block)
        except BrokenPipeError:
            pass  # the reader stopped at the bound

    for endless in (False, True):
        writer = threading.Thread(target=write, args=(endless,), daemon=True)
        writer.start()
        code, out, err = run(capsys, "send-batch", str(fifo), "--max-batch-rows", "50")
        writer.join(timeout=30)
        assert not writer.is_alive()
        if endless:
            assert code == cli.EXIT_INPUT and "more than 1,048,576 bytes" in err, err
        else:
            assert code == 0 and len(out.split()) == 2, err  # 96 rows, 2 batches
    assert uploads(sim) == 2
