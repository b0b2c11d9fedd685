"""A real redis-server (Debian's package; .ci/run installs it when missing) on a free
loopback port, stopped by its PID. ``durable``: AOF with ``appendfsync always`` in a
temporary folder, as the job journal requires (and restartable with its data)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

from postman_async.testing.process import free_port


class RedisServer:
    def __init__(self, *, durable: bool = False) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.durable = durable
        self.dir = tempfile.mkdtemp(prefix="pa-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir]
        args += ["--save", "", "--protected-mode", "yes", "--daemonize", "no"]
        args += (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.durable
            else [
                "--appendonly",
                "no",
            ]
        )
        self.proc = subprocess.Popen(
            [binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)

    def restart(self, *, lose_data: bool = False) -> None:
        """Stop and start again on the same port (a durable one keeps its data, unless
        ``lose_data``: as a restart without AOF would)."""
        self.stop()
        if lose_data:
            shutil.rmtree(self.dir, ignore_errors=True)
            os.makedirs(self.dir)
        self.start()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
