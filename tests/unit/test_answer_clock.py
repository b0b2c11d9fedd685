"""The answer clock's invariant on virtual time: for random network delays (heavy tails
included), stalls between grant and write, and lost answers, no second at the server holds
more than the rate; and a limiter that ignores answers breaks it on the same draws."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections.abc import Callable

import pytest

from postman_async import Priority, RateLimiter
from postman_async.answer_clock import CREDIT_AFTER, AnswerClock, Ticket
from postman_async.testing.server_limits import max_in_window

from ..helpers import VirtualClock

Legs = Callable[[random.Random], float]


def uniform(low: float, high: float) -> Legs:
    return lambda rng: rng.uniform(low, high)


def lognormal(median: float, cap: float = 1.5) -> Legs:
    """A heavy tail: p99 about ten times the median (capped under the clock's 2 s cap)."""
    return lambda rng: min(0.002 + median * math.exp(rng.gauss(0.0, 1.0)), cap)


async def _drive(
    limiter: RateLimiter,
    vc: VirtualClock,
    *,
    seed: int,
    calls: int = 400,
    callers: int = 30,
    legs: Legs | None = None,
    stall_share: float = 0.0,
    lost_share: float = 0.0,
    unsent_share: float = 0.0,
) -> list[float]:
    """Each call: a grant, maybe a stall before the write (a busy or stopped process), a way
    in, and an answer after the way back, or none (reported lost at a 5 s timeout). Returns
    when each call reached the server."""
    legs = legs or uniform(0.002, 0.042)
    rng = random.Random(seed)
    arrivals: list[float] = []
    left = iter(range(calls))

    async def caller() -> None:
        for _ in left:
            priority = Priority.HIGH if rng.random() < 0.3 else Priority.BULK
            ticket = await limiter.acquire(priority)
            assert isinstance(ticket, Ticket)
            if rng.random() < stall_share:
                await vc.sleep(rng.uniform(0.0, 0.3))
            if rng.random() < unsent_share:  # the connection failed first: never written
                await vc.sleep(rng.uniform(0.0, 0.05))
                ticket.unsent()
                continue
            ticket.written()
            way_in, way_out = legs(rng), legs(rng)
            arrivals.append(vc.clock() + way_in)
            if rng.random() < lost_share:
                await vc.sleep(5.0)
                ticket.lost()
            else:
                await vc.sleep(way_in + way_out)
                ticket.answered()

    await vc.run(asyncio.ensure_future(asyncio.gather(*(caller() for _ in range(callers)))))
    assert len(arrivals) >= calls * (1 - unsent_share) * 0.8
    return sorted(arrivals)


def _rate(arrivals: list[float]) -> float:
    return (len(arrivals) - 1) / (arrivals[-1] - arrivals[0])


CASES = {
    "uniform 0-40 ms": {"legs": uniform(0.002, 0.042)},
    "heavy tail": {"legs": lognormal(0.01)},
    "stalls": {"legs": uniform(0.002, 0.022), "stall_share": 0.2},
    "lost answers": {"legs": uniform(0.002, 0.042), "lost_share": 0.03},
    "unsent": {"legs": uniform(0.002, 0.042), "stall_share": 0.2, "unsent_share": 0.1},
    "everything": {
        "legs": lognormal(0.02),
        "stall_share": 0.1,
        "lost_share": 0.02,
        "unsent_share": 0.05,
    },
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_no_second_at_the_server_holds_more_than_the_rate(case: str, seed: int) -> None:
    vc = VirtualClock()
    limiter = RateLimiter(10, clock=vc.clock, sleep=vc.sleep)
    arrivals = await _drive(limiter, vc, seed=seed, **CASES[case])  # type: ignore[arg-type]
    assert max_in_window(arrivals) <= 10


async def test_the_rate_stays_near_the_budget() -> None:
    """What pacing by answers costs: about the round trips' spread above the credit."""
    for legs, floor in ((uniform(0.0005, 0.0005), 9.9), (uniform(0.002, 0.022), 9.6)):
        vc = VirtualClock()
        limiter = RateLimiter(10, clock=vc.clock, sleep=vc.sleep)
        arrivals = await _drive(limiter, vc, seed=7, calls=300, legs=legs)
        assert floor <= _rate(arrivals) <= 10.0


class _IgnoresAnswers(AnswerClock):
    """A mutant: each grant counts as released when granted (open loop, no margin)."""

    def ready_at(self) -> float:
        depth = self.depth
        if len(self._recent) < depth:
            return -math.inf
        return self._recent[-depth].granted_at + self.window


class _LostAtOnce(AnswerClock):
    """A mutant: a lost answer counts as released when it is given up on (not write + cap)
    and a stalled grant releases at its grant."""

    def settle(self, ticket: Ticket, *, answered: bool) -> None:
        ticket.released_at = ticket.granted_at
        self.changed()


@pytest.mark.parametrize(
    ("mutant", "case"), [(_IgnoresAnswers, "uniform 0-40 ms"), (_LostAtOnce, "everything")]
)
async def test_a_limiter_that_ignores_answers_breaks_the_invariant(
    mutant: type[AnswerClock], case: str
) -> None:
    broken = 0
    for seed in (1, 2, 3):
        vc = VirtualClock()
        limiter = RateLimiter(10, clock=vc.clock, sleep=vc.sleep)
        limiter.answers = mutant(10, clock=vc.clock, on_change=limiter._wake)
        arrivals = await _drive(limiter, vc, seed=seed, **CASES[case])  # type: ignore[arg-type]
        broken += max_in_window(arrivals) > 10
    assert broken  # the invariant test above would fail against it


def test_a_grant_never_written_does_not_count() -> None:
    now = [0.0]
    clock = AnswerClock(3, clock=lambda: now[0])
    tickets = [clock.grant() for _ in range(3)]
    assert clock.ready_at() == 0.0 + clock.cap + 1.0  # unanswered: held to grant + cap
    tickets[0].unsent()
    assert clock.ready_at() == -math.inf  # two counted grants: a third may go at once
    now[0] = 0.6
    tickets[1].lost()  # given up at 0.6, granted at 0: reached the server by 0.6
    assert tickets[1].released_at == 0.6
    tickets[2].answered()
    tickets[2].lost()  # a second report is ignored
    assert tickets[2].released_at == 0.6  # never written: not before its grant, no credit
    clock.grant()
    assert clock.ready_at() == 1.6


def test_a_credit_is_a_share_of_the_smallest_round_trip_once_enough_are_seen() -> None:
    now = [0.0]
    clock = AnswerClock(10, clock=lambda: now[0], credit_fraction=0.25)
    for index in range(CREDIT_AFTER):
        assert clock.credit == 0.0
        ticket = clock.grant()
        ticket.written()
        now[0] += 0.1 + 0.01 * index
        ticket.answered()
    assert clock.credit == pytest.approx(0.025)
    ticket = clock.grant()
    ticket.written()
    now[0] += 0.5
    ticket.answered()
    assert ticket.released_at == pytest.approx(now[0] - 0.025)


def test_a_lost_answer_counts_until_write_plus_cap() -> None:
    now = [0.0]
    clock = AnswerClock(1, clock=lambda: now[0], cap=2.0)
    ticket = clock.grant()
    now[0] = 0.4
    ticket.written()
    now[0] = 30.0  # a timeout long after
    ticket.lost()
    assert ticket.released_at == 2.4 and clock.ready_at() == 3.4
    assert clock.lost_answers == 1


async def test_grants_held_back_catch_up_at_most_twice_the_rate() -> None:
    """One answer comes late and holds a grant back; the ones after it catch up, spaced at
    least half an interval apart (no burst), and no second holds more than the rate."""
    vc = VirtualClock()
    limiter = RateLimiter(10, clock=vc.clock, sleep=vc.sleep)
    grants: list[float] = []
    left = iter(range(60))

    async def caller() -> None:
        for index in left:
            ticket = await limiter.acquire()
            assert isinstance(ticket, Ticket)
            grants.append(vc.clock())
            ticket.written()
            await vc.sleep(1.5 if index == 12 else 0.001)  # one slow answer
            ticket.answered()

    await vc.run(asyncio.ensure_future(asyncio.gather(*(caller() for _ in range(8)))))
    gaps = [b - a for a, b in itertools.pairwise(grants)]
    assert min(gaps) >= 0.05 - 1e-9  # half an interval
    assert any(gap < 0.1 - 1e-9 for gap in gaps)  # it did catch up
    assert max_in_window(grants) <= 10
