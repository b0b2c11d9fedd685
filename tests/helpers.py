"""Test helpers: a virtual clock for deterministic time-dependent tests."""

from __future__ import annotations

import asyncio
import heapq
import itertools


class VirtualClock:
    """``clock``/``sleep`` pair on virtual time. ``run(coro)`` drives it: whenever every task
    is blocked, time jumps to the earliest sleeper's wake-up."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, delay), next(self._seq), future))
        await future

    async def run(self, main: asyncio.Future[object] | asyncio.Task[object]) -> None:
        while not main.done():
            for _ in range(20):
                await asyncio.sleep(0)
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)
            if main.done() or not self._sleepers:
                continue
            when, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            future.set_result(None)
        await main
