"""Shared helpers for the benchmarks (each one prints its figures and returns them)."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def simulator_process(*args: str) -> Iterator[tuple[str, str, str]]:
    """Run ``postman-async simulator`` in its own process; yields (base_url, campaign, key)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "postman_async", "simulator", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        campaign = lines[1].split(":", 1)[1].strip()
        key = lines[2].split(":", 1)[1].strip()
        yield f"http://127.0.0.1:{port}/api/v2", campaign, key
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def wait_until_up(url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url):
                    return
            except aiohttp.ClientError:
                if time.monotonic() > deadline:
                    raise
                await __import__("asyncio").sleep(0.05)


def table(rows: list[tuple[str, object]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)
