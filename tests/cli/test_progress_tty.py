"""Live progress and tables as an operator sees them: the CLI in an 80-column pseudo-terminal,
its output replayed on a small terminal emulator (carriage returns, erased lines, cursor moves
and the terminal's own wrap at the last column), then read back."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from postman_async.testing import SimulatorProcess

COLUMNS = 80
CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
OSC = re.compile(r"\x1b\][^\x07]*\x07")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
#: An ID as printed: its prefix and whatever of its UUID is on the same screen line.
ID_SEEN = re.compile(r"\b(?:message|batch|campaign)_[0-9a-f][0-9a-f-]*")
WHOLE_ID = re.compile(r"(?:message|batch|campaign)_[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}")


class Screen:
    """Just enough of a terminal: text wraps at the last column, ``\\r`` returns, ``\\n``
    moves down, CSI ``K`` erases, ``A``/``B`` move up/down, ``G`` sets the column."""

    def __init__(self, columns: int) -> None:
        self.columns = columns
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0

    def feed(self, text: str) -> None:
        at = 0
        while at < len(text):
            csi = CSI.match(text, at)
            if csi:
                self._control(csi.group(1), csi.group(2))
                at = csi.end()
                continue
            osc = OSC.match(text, at)
            if osc:
                at = osc.end()
                continue
            self._put(text[at])
            at += 1

    def _line(self) -> list[str]:
        while len(self.rows) <= self.row:
            self.rows.append([])
        return self.rows[self.row]

    def _put(self, char: str) -> None:
        if char == "\r":
            self.col = 0
        elif char == "\n":
            self.row, self.col = self.row + 1, 0
        elif char >= " ":
            if self.col >= self.columns:  # the terminal's own wrap
                self.row, self.col = self.row + 1, 0
            line = self._line()
            line.extend(" " * (self.col + 1 - len(line)))
            line[self.col] = char
            self.col += 1

    def _control(self, params: str, command: str) -> None:
        number = int(params) if params.isdigit() else None
        line = self._line()
        if command == "K":
            if number == 2:
                line.clear()
            else:
                del line[self.col :]
        elif command == "A":
            self.row = max(0, self.row - (number or 1))
        elif command == "B":
            self.row += number or 1
        elif command == "G":
            self.col = (number or 1) - 1

    def lines(self) -> list[str]:
        return ["".join(row).rstrip() for row in self.rows]


def run_in_pty(
    args: list[str], env: dict[str, str], columns: int = COLUMNS, timeout: float = 60.0
) -> tuple[int, str, list[str]]:
    """Run the CLI with a terminal on stdin, stdout and stderr: (exit code, everything it
    wrote with the escapes removed, the screen's lines)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "postman_async", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "TERM": "xterm-256color", "COLUMNS": str(columns)},
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout  # a bound on a hung child, not a synchronisation
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    code = proc.wait(timeout=10)
    os.close(master)
    raw = b"".join(chunks).decode("utf-8", "replace")
    screen = Screen(columns)
    screen.feed(raw)
    return code, " ".join(ANSI.sub("", raw).split()), screen.lines()


def assert_no_id_wrapped(lines: list[str]) -> None:
    seen = [m.group(0) for line in lines for m in ID_SEEN.finditer(line)]
    assert seen, "no ID on the screen"
    cut = [s for s in seen if not WHOLE_ID.fullmatch(s)]
    assert cut == [], "\n".join(lines)


def rates(text: str) -> list[float]:
    """Every call rate the CLI showed: ``N calls/s`` and ``N in the last second``."""
    shown = re.findall(r"(\d+(?:\.\d+)?) calls/s", text)
    shown += re.findall(r"\((\d+) in the last second", text)
    return [float(r) for r in shown]


def simulator_env(sim: SimulatorProcess, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "POSTMAN_API_KEY": sim.api_key,
        "POSTMAN_CAMPAIGN_ID": sim.campaign_id,
        "POSTMAN_BASE_URL": sim.base_url,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }


def start(tmp_path: Path, *args: str) -> SimulatorProcess:
    return SimulatorProcess(*args, "--ids-out", str(tmp_path / "ids.txt"))


def test_demo_shows_phase_final_of_total_and_server_rates_within_budget() -> None:
    code, text, lines = run_in_pty(
        ["demo", "--messages", "40", "--rate", "200", "--time-scale", "50"], dict(os.environ)
    )
    assert code == 0, text
    assert re.search(r"\[(sending|settling|waiting|round)[^\]]*\] \d+/50 final", text), text
    assert "in the last second of 200/s" in text and "ETA <=" not in text
    assert rates(text) and max(rates(text)) <= 200
    # The title is a line of its own: it wraps only at the terminal's width, not the table's.
    assert "demo summary (server-side figures from the simulator)" in lines


def test_settle_shows_round_phase_final_of_known_and_calls_within_budget(tmp_path: Path) -> None:
    args = ("--rate-limit", "20", "--time-scale", "100", "--failed-messages", "30")
    with start(tmp_path, *args) as sim:
        code, text, _ = run_in_pty(
            ["settle", "--ids-file", str(tmp_path / "ids.txt"), "--rate-limit", "20"],
            simulator_env(sim, tmp_path),
        )
    assert code == 0, text
    assert re.search(r"round 1: (reading|retrying)[^;]*; \d+/30 final", text), text
    assert "ETA" not in text  # an ETA of delivery is not the client's to know
    assert rates(text) and max(rates(text)) <= 20
    assert "30 messages, 30 delivered" in text


def test_retry_rate_never_above_the_budget_and_tables_never_wrap_an_id(tmp_path: Path) -> None:
    """A retry at 20/s with an invalid ID among the IDs (once shown as 437.0/s), then the
    summary tables, at 80 columns: every ID whole on one screen line."""
    args = ("--rate-limit", "20", "--time-scale", "100", "--failed-messages", "40")
    ids_file = tmp_path / "ids.txt"
    with start(tmp_path, *args) as sim:
        env = simulator_env(sim, tmp_path)
        failed = ids_file.read_text().split()
        ids_file.write_text("bad/id\n" + ids_file.read_text())
        code, text, lines = run_in_pty(
            ["retry", "--ids-file", str(ids_file), "--rate-limit", "20"], env
        )
        assert code == 7, text  # 40 retried, 1 invalid
        assert rates(text) and max(rates(text)) <= 20
        assert "bad/id" in "".join(lines)  # the one ID in a table here, and not fed back
        assert "feed these back" not in text
        code, text, lines = run_in_pty(["list", "--rate-limit", "20", "--limit", "30"], env)
        assert code == 0, text
        assert "30 shown" in text and "more not shown" in text
        assert_no_id_wrapped(lines)
        code, text, lines = run_in_pty(["status", *failed[:3]], env)
        assert code == 0, text
        assert_no_id_wrapped(lines)
        # The other columns are folded beside the IDs, not cut to "65…" and "fa…".
        assert sum("recipient 6591234567" in line for line in lines) == 3, "\n".join(lines)
        assert "…" not in text


def test_retry_batch_table_keeps_the_batch_id_whole_and_shows_its_status(tmp_path: Path) -> None:
    with start(tmp_path, "--rate-limit", "1000", "--time-scale", "100") as sim:
        env = simulator_env(sim, tmp_path)
        sent = subprocess.run(
            [sys.executable, "-m", "postman_async", "send-batch", "people.csv"],
            env=env,
            cwd=Path(__file__).parents[2] / "examples",
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stderr
        batch_id = sent.stdout.strip()
        sim.advance(60)
        code, text, lines = run_in_pty(["retry-batch", batch_id, "--yes"], env)
    assert code == 0, text
    assert_no_id_wrapped(lines)
    assert f"batch {batch_id}" in lines
    assert re.search(r"batch status \(read before\)\s+messages_enqueued", text), text
    assert "?" not in text
