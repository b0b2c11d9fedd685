"""Shared helpers for the benchmarks (each one prints its figures and returns them)."""

from __future__ import annotations

import platform
import time
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp

from postman_async.testing import SimulatorProcess


def machine() -> str:
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


@contextmanager
def simulator_process(*args: str) -> Iterator[tuple[str, str, str]]:
    """The standalone simulator in its own process; yields (base_url, campaign, key)."""
    with SimulatorProcess(*args) as sim:
        yield sim.base_url, sim.campaign_id, sim.api_key


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
