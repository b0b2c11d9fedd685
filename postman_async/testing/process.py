"""Run the standalone simulator (``postman-async simulator``) in a child process, e.g. for
tests of code that cannot share the simulator's event loop (a CLI, another process)."""

from __future__ import annotations

import socket
import subprocess
import sys
from types import TracebackType


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SimulatorProcess:
    """``with SimulatorProcess("--rate-limit", "1000") as sim: sim.base_url``.

    Extra arguments are passed to ``postman-async simulator``. The process is stopped (by its
    PID) on exit.
    """

    def __init__(self, *args: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.args = args
        self.base_url = f"http://127.0.0.1:{self.port}/api/v2"
        self.campaign_id = ""
        self.api_key = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> SimulatorProcess:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "postman_async",
                "simulator",
                "--port",
                str(self.port),
                *self.args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._proc.stdout is not None
        lines = [self._proc.stdout.readline() for _ in range(3)]
        if not lines[0].startswith("Postman v2 simulator listening"):
            self.stop()
            raise RuntimeError(f"the simulator did not start: {lines[0]!r}")
        self.campaign_id = lines[1].split(":", 1)[1].strip()
        self.api_key = lines[2].split(":", 1)[1].strip()
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
