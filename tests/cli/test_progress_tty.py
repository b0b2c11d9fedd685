"""Live progress as an operator sees it: the CLI in a pseudo-terminal, its screen read back."""

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

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def run_in_pty(args: list[str], env: dict[str, str], timeout: float = 60.0) -> tuple[int, str]:
    """Run the CLI with a terminal (160 columns) on stdin, stdout and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "postman_async", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**env, "TERM": "xterm-256color"},
        close_fds=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
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
    return code, ANSI.sub("", b"".join(chunks).decode("utf-8", "replace"))


def test_demo_shows_phase_final_of_total_and_eta() -> None:
    code, screen = run_in_pty(
        ["demo", "--messages", "40", "--rate", "200", "--time-scale", "50"], dict(os.environ)
    )
    assert code == 0, screen
    assert re.search(r"\[(sending|settling|waiting)[^\]]*\] \d+/50 final", screen), screen
    assert "ETA <= " in screen and "at 200/s" in screen
    assert "demo summary" in screen


def test_settle_shows_round_phase_final_of_known_and_eta(tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    args = ("--rate-limit", "200", "--time-scale", "100", "--failed-messages", "20")
    with SimulatorProcess(*args, "--ids-out", str(ids_file)) as sim:
        env = {
            **os.environ,
            "POSTMAN_API_KEY": sim.api_key,
            "POSTMAN_CAMPAIGN_ID": sim.campaign_id,
            "POSTMAN_BASE_URL": sim.base_url,
        }
        code, screen = run_in_pty(
            ["settle", "--ids-file", str(ids_file), "--rate-limit", "200"], env
        )
    assert code == 0, screen
    assert re.search(r"round 1: (reading|retrying)[^;]*; \d+/20 final", screen), screen
    assert "ETA <= " in screen and "at 200/s" in screen
    assert "20 messages, 20 delivered" in screen
