"""Run the standalone simulator (``postman-async simulator``) in a child process, e.g. for
tests of code that cannot share the simulator's event loop (a CLI, another process)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from types import TracebackType
from typing import Any


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

    def _admin(self, path: str, method: str = "GET", **query: str) -> dict[str, Any]:
        url = self.base_url.replace("/api/v2", f"/__simulator__/{path}")
        url += "?" + urllib.parse.urlencode({"campaign": self.campaign_id, **query})
        request = urllib.request.Request(url, method=method)
        with urllib.request.urlopen(request, timeout=30) as answer:
            data: dict[str, Any] = json.loads(answer.read())
        return data

    def advance(self, seconds: float) -> None:
        """Move the simulator's time on by ``seconds`` (its lifecycle and rate windows), as
        :meth:`PostmanSimulator.advance` does in-process: step it, never sleep for it."""
        self._admin("advance", "POST", seconds=str(seconds))

    def stats(self, *, posts: bool = False) -> dict[str, Any]:
        """The simulator's ground truth for the default campaign: requests, 429s, the most
        requests in any sliding second (``maxPerSecond``) and, with ``posts``, every processed
        POST per intended action (``posts``)."""
        return self._admin("stats", **({"posts": "1"} if posts else {}))

    def messages(self, batch_id: str | None = None) -> dict[str, dict[str, Any]]:
        """Every message of the default campaign (or of one batch) with its ``status`` and
        ``attempts``, as the simulator knows them."""
        query = {"batch": batch_id} if batch_id else {}
        messages: dict[str, dict[str, Any]] = self._admin("messages", **query)["messages"]
        return messages

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
