"""Shared helpers for the benchmarks (each one prints its figures and returns them)."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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


def table(rows: list[tuple[str, object]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


async def sim_stats(base_url: str, campaign: str, *, times: bool = False) -> dict[str, Any]:
    """The standalone simulator's ground truth (its /__simulator__/stats endpoint)."""
    url = base_url.replace("/api/v2", "/__simulator__/stats")
    params = {"campaign": campaign, **({"times": "1"} if times else {})}
    async with aiohttp.ClientSession() as session, session.get(url, params=params) as resp:
        data: dict[str, Any] = await resp.json()
        return data


def stopper(pid: int, seed: int) -> None:
    """SIGSTOP ``pid`` for 300 ms every 0.3-1.5 s, until it is gone (run it in a process of
    its own: a stalled machine, for the CPU-starvation benchmarks)."""
    import os
    import random
    import signal
    import time

    rng = random.Random(seed)
    while True:
        time.sleep(rng.uniform(0.3, 1.5))
        try:
            os.kill(pid, signal.SIGSTOP)
            time.sleep(0.3)
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            return


def burn(deadline: float) -> None:
    """Keep a core busy until ``deadline`` (``time.monotonic``)."""
    import time

    while time.monotonic() < deadline:
        pass
