"""Test helpers: virtual clocks for deterministic time-dependent tests, client factories."""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from postman_async import PostmanClient, RetryOrchestrator


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


async def no_sleep(_: float) -> None:
    """A backoff sleep that only yields: retries happen at once in tests."""
    await asyncio.sleep(0)


def backoff_until_listening(sim: Any) -> Callable[[float], Awaitable[None]]:
    """A backoff sleep that returns at once while ``sim`` listens and, while it restarts,
    when it listens again: retries spend nothing on how long a loaded machine takes to
    restart it (with :func:`no_sleep` they could spend the whole retry budget)."""

    async def sleep(_: float) -> None:
        while not sim.listening:  # noqa: ASYNC110 - the simulator's restart sets it
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)

    return sleep


def sim_time(sim: Any) -> dict[str, Any]:
    """``clock``/``sleep`` for an orchestrator that drives the simulator's time: each of its
    sleeps advances the simulator by that much, so polling sees the lifecycle move on without
    waiting for it (and without racing it)."""

    async def sleep(delay: float) -> None:
        sim.advance(max(0.0, delay))
        await asyncio.sleep(0)

    return {"clock": sim.clock, "sleep": sleep}


def stopped_clock() -> float:
    """A simulator clock that only :meth:`~PostmanSimulator.advance` moves: its lifecycle
    cannot race the test however loaded the machine is (for tests that send few enough
    requests that the simulator's rate windows need not pass)."""
    return 0.0


def settled_orchestrator(client: PostmanClient, sim: Any, **options: Any) -> RetryOrchestrator:
    """An orchestrator on the simulator's time (see :func:`sim_time`)."""
    return RetryOrchestrator(client, **{**sim_time(sim), **options})


def client_for(sim: Any, **options: Any) -> PostmanClient:
    """A client of the simulator's default campaign, at the simulator's rate."""
    return PostmanClient(
        api_key=options.pop("api_key", sim.api_key),
        campaign_id=options.pop("campaign_id", sim.campaign_id),
        base_url=sim.base_url,
        rate_limit=options.pop("rate_limit", sim.rate_limit),
        **options,
    )


def fast_orchestrator(client: PostmanClient, **options: Any) -> RetryOrchestrator:
    """An orchestrator that polls at test speed."""
    return RetryOrchestrator(client, poll_interval=0.02, max_poll_interval=0.1, **options)


def assert_no_leftover_tasks() -> None:
    """No task outlives the code under test (the simulator's own handlers excepted)."""
    current = asyncio.current_task()
    leftovers = [
        t
        for t in asyncio.all_tasks()
        if t is not current and "RequestHandler" not in getattr(t.get_coro(), "__qualname__", "")
    ]
    assert leftovers == []


# -- waiting for an observable condition (another process or task moves it) ---------------

#: How long a wait may take before the test fails as hung: a guard, never a timing assertion.
HANG_GUARD = 60.0


async def wait_for_condition(
    check: Callable[[], bool | Awaitable[bool]],
    what: str,
    *,
    timeout: float = HANG_GUARD,
    interval: float = 0.02,
) -> None:
    """Poll ``check`` (sync or async) until it is true; fail naming ``what`` after
    ``timeout`` seconds. The condition is the synchronisation; ``interval`` only spaces the
    polls of something another process changes."""

    async def poll() -> None:
        while True:
            result = check()
            if await result if inspect.isawaitable(result) else result:
                return
            await asyncio.sleep(interval)  # spaces the polls; the condition decides

    try:
        await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None


def wait_until(
    check: Callable[[], bool], what: str, *, timeout: float = HANG_GUARD, interval: float = 0.02
) -> None:
    """:func:`wait_for_condition` for synchronous tests (a child process moves ``check``)."""
    asyncio.run(wait_for_condition(check, what, timeout=timeout, interval=interval))
