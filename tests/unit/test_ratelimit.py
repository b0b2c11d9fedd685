from __future__ import annotations

import asyncio
import random

import pytest

from postman_async import Priority, RateLimiter, margin
from postman_async.answer_clock import Ticket
from postman_async.margin import MarginTuner
from postman_async.ratelimit import shared_limiter
from postman_async.testing.server_limits import max_in_window

from ..helpers import VirtualClock

PACINGS = pytest.mark.parametrize("pacing", ["answers", "margin"])


def _answer(ticket: object) -> None:
    """Report a zero round trip for a grant, when the limiter paces by answers."""
    if isinstance(ticket, Ticket):
        ticket.written()
        ticket.answered()


async def _grant_times(
    limiter: RateLimiter, vc: VirtualClock, n: int, workers: int, priority: Priority
) -> list[float]:
    """Grant times of ``n`` calls; each answered at once (a zero round trip)."""
    times: list[float] = []
    remaining = iter(range(n))

    async def worker() -> None:
        for _ in remaining:
            ticket = await limiter.acquire(priority)
            times.append(vc.clock())
            _answer(ticket)

    async def main() -> None:
        await asyncio.gather(*(worker() for _ in range(workers)))

    await vc.run(asyncio.ensure_future(main()))
    return times


@PACINGS
async def test_no_burst_and_rate_held_on_virtual_time(pacing: str) -> None:
    for priority in (Priority.HIGH, Priority.BULK):
        vc = VirtualClock()
        limiter = RateLimiter(10, pacing=pacing, clock=vc.clock, sleep=vc.sleep)
        times = await _grant_times(limiter, vc, 100, 20, priority)
        assert len(times) == 100
        assert max_in_window(sorted(times)) == 10  # never 11, and no initial burst
        assert times[1] - times[0] >= 0.1  # the second grant waits one interval
        elapsed = times[-1] - times[0]
        assert 99 * 0.1 <= elapsed <= 99 * 0.1 * (1 + limiter.margin) + 1e-9


@PACINGS
async def test_idle_limiter_grants_one_at_once_not_a_burst(pacing: str) -> None:
    vc = VirtualClock()
    limiter = RateLimiter(10, pacing=pacing, clock=vc.clock, sleep=vc.sleep)
    vc.now = 1000.0
    times = await _grant_times(limiter, vc, 3, 3, Priority.HIGH)
    assert times[0] == 1000.0 and times[1] >= 1000.1 and times[2] >= 1000.2


@PACINGS
async def test_urgent_call_jumps_the_bulk_queue(pacing: str) -> None:
    vc = VirtualClock()
    limiter = RateLimiter(10, pacing=pacing, clock=vc.clock, sleep=vc.sleep)
    bulk_grants: list[float] = []
    urgent_waits: list[float] = []
    urgent_grants: list[float] = []

    async def bulk_worker() -> None:
        for _ in range(20):
            ticket = await limiter.acquire(Priority.BULK)
            bulk_grants.append(vc.clock())
            _answer(ticket)

    async def urgent() -> None:
        for delay in (0.55, 0.43, 0.71):
            await vc.sleep(delay)
            asked = vc.clock()
            _answer(await limiter.acquire(Priority.HIGH))
            urgent_waits.append(vc.clock() - asked)
            urgent_grants.append(vc.clock())

    async def main() -> None:
        await asyncio.gather(*(bulk_worker() for _ in range(10)), urgent())

    await vc.run(asyncio.ensure_future(main()))
    assert len(urgent_waits) == 3
    # Ten bulk workers keep the budget saturated, yet each urgent call waits at most one
    # interval (0.1 s plus the margin), not behind the ten queued bulk calls.
    assert max(urgent_waits) <= 0.1 * (1 + limiter.margin) + 1e-9
    assert max_in_window(sorted([*bulk_grants, *urgent_grants])) == 10


@PACINGS
async def test_penalize_pauses_and_slows_then_recovers(pacing: str) -> None:
    vc = VirtualClock()
    limiter = RateLimiter(10, pacing=pacing, clock=vc.clock, sleep=vc.sleep, recovery=10.0)
    await _grant_times(limiter, vc, 5, 1, Priority.HIGH)
    await limiter.penalize(2.0, retry_after=2.0)  # longer than a window: a competitor
    paused_at = vc.clock()
    assert limiter.current_rate == 5.0
    times = await _grant_times(limiter, vc, 3, 3, Priority.BULK)
    assert times[0] >= paused_at + 2.0  # nothing went out during the pause
    assert times[1] - times[0] > 0.15  # slower than 10/s right after the 429
    vc.now += 20
    assert limiter.current_rate == 10.0


async def test_penalty_voids_slots_reserved_before_it() -> None:
    vc = VirtualClock()
    limiter = RateLimiter(10, pacing="margin", clock=vc.clock, sleep=vc.sleep)
    grants: list[float] = []

    async def take() -> None:
        await limiter.acquire(Priority.HIGH)
        grants.append(vc.clock())

    async def main() -> None:
        tasks = [asyncio.ensure_future(take()) for _ in range(5)]
        await vc.sleep(0.15)
        await limiter.penalize(1.0)
        await asyncio.gather(*tasks)

    await vc.run(asyncio.ensure_future(main()))
    first, second, *rest = sorted(grants)
    assert first == 0.0 and 0.1 <= second <= 0.1 * (1 + limiter.margin) + 1e-9
    assert len(rest) == 3 and all(t >= 1.15 for t in rest)  # held back by it


@PACINGS
async def test_cancelled_waiter_gives_its_slot_back(pacing: str) -> None:
    vc = VirtualClock()
    limiter = RateLimiter(10, pacing=pacing, clock=vc.clock, sleep=vc.sleep)

    async def main() -> None:
        _answer(await limiter.acquire())
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        before = vc.clock()
        await limiter.acquire()
        assert vc.clock() - before <= 0.1 * (1 + limiter.margin) + 1e-9

    await vc.run(asyncio.ensure_future(main()))
    assert limiter.grants == 2


async def test_shared_limiter_per_campaign() -> None:
    a = shared_limiter("https://h/api#c1", 10)
    assert shared_limiter("https://h/api#c1", 20) is a and a.rate == 10
    assert shared_limiter("https://h/api#c1", 5) is a and a.rate == 5
    assert shared_limiter("https://h/api#c2", 10) is not a


async def test_late_wake_does_not_squeeze_grants() -> None:
    """A waiter woken long after its slot (a stalled loop) must not be sent squeezed against
    the slots already promised after it: no 11 grants in any second at 10/s."""
    vc = VirtualClock()
    limiter = RateLimiter(10, pacing="margin", clock=vc.clock, sleep=vc.sleep)
    for _ in range(10):  # past the learning phase: HIGH grants reserve slots ahead
        limiter.observe(0.002)
    assert limiter.tuner is not None and not limiter.tuner.learning
    grants: list[float] = []
    stalled_once = False

    async def stalling_sleep(delay: float) -> None:
        nonlocal stalled_once
        await vc.sleep(delay)
        if not stalled_once and vc.now > 0.45:
            stalled_once = True
            vc.now += 0.03  # the loop stalls 30 ms: this waiter wakes late

    limiter._sleep = stalling_sleep

    async def take() -> None:
        for _ in range(5):
            await limiter.acquire(Priority.HIGH)
            grants.append(vc.clock())

    await vc.run(asyncio.ensure_future(asyncio.gather(*(take() for _ in range(6)))))
    assert stalled_once and len(grants) == 30
    assert max_in_window(sorted(grants)) <= 10


async def test_a_jitter_429_widens_the_margin_and_keeps_the_rate() -> None:
    vc = VirtualClock()
    limiter = RateLimiter(10, pacing="margin", clock=vc.clock, sleep=vc.sleep)
    assert limiter.tuner is not None
    for _ in range(40):  # a quiet loopback: round trips within 1 ms of each other
        limiter.observe(0.002 + 0.001 * (_ % 2))
    quiet = margin.FLOOR + margin.LATENCY_FACTOR * 0.001  # lateness plus the spread
    assert limiter.margin == pytest.approx(quiet)
    await limiter.penalize(1.0, retry_after=1.0)  # the window passing: jitter
    assert limiter.current_rate == 10.0  # not halved
    assert limiter.margin == pytest.approx(quiet + 0.01)  # widened at once
    before = await _grant_times(limiter, vc, 3, 1, Priority.HIGH)
    assert before[0] >= 1.0  # but the server's pause is honoured: about a second of budget


async def test_429s_a_wider_margin_cannot_cure_cut_the_rate() -> None:
    vc = VirtualClock()
    limiter = RateLimiter(10, pacing="margin", clock=vc.clock, sleep=vc.sleep)
    cuts = []
    for _ in range(8):  # a competitor: 429s keep coming however wide the spacing
        await limiter.penalize(0.0)
        cuts.append(limiter.current_rate < 10.0)
    assert limiter.margin == pytest.approx(0.16)  # the ceiling
    assert not cuts[0] and cuts[-1]  # widened first; then, at the ceiling, the rate is cut


async def test_the_margin_decays_back_when_quiet() -> None:
    vc = VirtualClock()
    limiter = RateLimiter(10, pacing="margin", clock=vc.clock, sleep=vc.sleep)
    for _ in range(40):
        limiter.observe(0.002)
    await limiter.penalize(0.0)
    widened = limiter.margin
    vc.now += 29.0
    assert limiter.margin == widened  # held for a while
    vc.now += 1.0 + 60.0  # one half-life past the hold
    assert limiter.margin == pytest.approx(margin.FLOOR + (widened - margin.FLOOR) / 2)
    vc.now += 3600.0
    assert limiter.margin == pytest.approx(margin.FLOOR, abs=1e-6)


def test_round_trip_spread_sets_the_margin() -> None:
    tuner = MarginTuner()
    assert tuner.margin(0.0) == margin.START  # cautious until enough round trips are seen
    rng = random.Random(1)
    for _ in range(200):  # two legs of uniform 0-40 ms jitter on a 10 ms path
        tuner.observe(0.02 + rng.uniform(0, 0.04) + rng.uniform(0, 0.04))
    assert 0.042 <= tuner.margin(0.0) <= 0.05  # one leg's jitter plus the lateness floor


async def test_no_second_holds_more_than_the_rate_while_the_margin_changes() -> None:
    vc = VirtualClock()
    limiter = RateLimiter(10, pacing="margin", clock=vc.clock, sleep=vc.sleep)
    rng = random.Random(5)
    grants: list[float] = []

    async def caller() -> None:
        for index in range(60):
            await limiter.acquire(Priority.HIGH if index % 3 else Priority.BULK)
            grants.append(vc.clock())
            limiter.observe(rng.uniform(0.001, 0.004 if vc.now < 20 else 0.08))
            if index in (10, 30):
                await limiter.penalize(0.0)  # jitter 429s: the margin widens mid-run
            if index == 45:
                vc.now += 200.0  # a quiet spell: the margin decays

    await vc.run(asyncio.ensure_future(asyncio.gather(*(caller() for _ in range(6)))))
    assert len(grants) == 360
    assert max_in_window(sorted(grants)) <= 10


@PACINGS
async def test_a_shorter_pause_does_not_cut_a_longer_one_short(pacing: str) -> None:
    vc = VirtualClock()
    limiter = RateLimiter(10, pacing=pacing, clock=vc.clock, sleep=vc.sleep)
    limiter.pause(3.0)  # a 429 with Retry-After: 3
    limiter.pause(0.5)  # another caller's shorter 429 right after
    times = await _grant_times(limiter, vc, 2, 2, Priority.HIGH)
    assert times[0] >= 3.0
