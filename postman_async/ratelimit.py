"""Per-campaign rate limiting: no-burst spacing with priority lanes, clocked by the server's
answers, slowing down after a 429.

Why not ``aiolimiter.AsyncLimiter(10, 1)``: it admits a burst of 10 and then 10 more within the
same second (19-20 in a sliding second, measured), and the server drops what exceeds 10.

**Pacing by answers** (the default, :mod:`postman_async.answer_clock`): grants are spaced
``1 / rate`` apart, and the ``(k + rate)``-th is written no earlier than one second after the
``k``-th request's answer arrived. An answer proves
its request already passed the server's limiter, so no second at the server holds more than
``rate`` of our requests, whatever the network's jitter (heavy tails included) and however late
a busy or stalled process writes what it was granted. It assumes only that a request reaches
the server within ``cap`` (2 s) of its write. The session layer reports each request's fate
to the :class:`~postman_async.answer_clock.Ticket` that ``acquire`` returns.

**Pacing by margin** (``pacing="margin"``, kept for comparison, or a fixed ``margin``): grants
are spaced ``(1 + margin) / rate`` apart and the margin, learned from the round trips' spread
(:mod:`postman_async.margin`), absorbs the arrival jitter it can foresee. A ``HIGH`` caller
reserves the next free slot at once; a grant woken more than 5 ms (or half the margin) late
re-queues rather than squeeze against the slots promised after it.

Lanes: ``HIGH`` callers go before the ``BULK`` queue (FIFO), so an urgent call that arrives while
a bulk job saturates the budget waits about one interval. A 429 (a competitor or a server-side
cut) pauses the campaign and halves the rate, which recovers over ``recovery`` seconds.
"""

from __future__ import annotations

import asyncio
import collections
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from . import answer_clock
from .margin import MarginTuner
from .models import Priority

Clock = Callable[[], float]
PACINGS = ("answers", "margin")
#: s of schedule that grants held back by the answer clock may make up
CATCH_UP = 1.0
#: intervals that grants making up the schedule keep from the previous grant
MIN_GAP = 0.5
#: A HIGH grant woken this late (s) is still sent; later, it re-queues (see the module doc).
LATE_WAKE_TOLERANCE = 0.005
Sleep = Callable[[float], Awaitable[None]]


class Grant(Protocol):
    """What became of a granted request, reported by the session layer so an answer-clocked
    limiter (:mod:`postman_async.answer_clock`) can pace by the server's answers: ``written``
    as its headers go out, then one of ``answered`` (any response), ``lost`` (no answer will
    come: a timeout, a reset) or ``unsent`` (never written)."""

    def written(self) -> None: ...
    def answered(self) -> None: ...
    def lost(self) -> None: ...
    def unsent(self) -> None: ...


@runtime_checkable
class Limiter(Protocol):
    """What the session layer needs from a campaign limiter (in-process or Redis).

    A limiter may also have ``observe(round_trip: float)``: the session then reports each
    request's round trip (s), from which the limiter can learn the network's jitter."""

    @property
    def rate(self) -> float:
        """The campaign's rate (calls per second) this limiter holds to."""
        ...

    async def acquire(self, priority: Priority = Priority.HIGH) -> Grant | None:
        """Wait for one token of the campaign's budget. A limiter that paces by answers
        returns a :class:`Grant` to report the request's fate to; others return None."""

    async def penalize(self, delay: float, *, retry_after: float | None = None) -> None:
        """The server throttled us: pause the campaign for ``delay`` s, and widen the spacing
        or slow down (``retry_after``: the server's hint, when it sent one)."""


class RateLimiter:
    """In-process per-campaign limiter. See the module docstring for the guarantees."""

    def __init__(
        self,
        rate: float = 10.0,
        *,
        pacing: str = "answers",
        margin: float | None = None,
        slack: float = 0.002,
        recovery: float = 30.0,
        min_fraction: float = 0.25,
        cap: float = answer_clock.CAP,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        if pacing not in PACINGS:
            raise ValueError(f"pacing must be one of {PACINGS}")
        self._rate = float(rate)
        if margin is not None:
            pacing = "margin"  # a fixed margin is the margin pacing, not learned
        #: paces by answers (see :mod:`postman_async.answer_clock`); None in margin pacing
        self.answers = (
            answer_clock.AnswerClock(rate, clock=clock, cap=cap, on_change=self._wake)
            if pacing == "answers"
            else None
        )
        #: learns the margin; None when a fixed ``margin`` was given or pacing by answers
        self.tuner = MarginTuner() if pacing == "margin" and margin is None else None
        self._fixed_margin = margin or 0.0
        self.slack = slack
        self.recovery = recovery
        self.min_fraction = min_fraction
        self._clock = clock
        self._sleep = sleep
        self._tat = -float("inf")  # theoretical arrival time of the next free slot
        self._blocked_until = -float("inf")
        self._fraction = 1.0  # share of the rate in force after the last 429
        self._penalized_at = -float("inf")
        self._bulk_lock: asyncio.Lock | None = None
        self._high_lock: asyncio.Lock | None = None
        self._changed: asyncio.Event | None = None
        self._high_waiting = 0
        self._last_grant = -float("inf")
        self.grants = 0
        self.throttles = 0
        self._spacings: collections.deque[tuple[float, float]] = collections.deque(maxlen=256)

    @property
    def rate(self) -> float:
        """The design rate (calls per second); settable, and a new rate applies at once."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        if not value > 0:
            raise ValueError("rate must be > 0")
        self._rate = float(value)
        if self.answers is not None:
            self.answers.rate = self._rate

    @property
    def margin(self) -> float:
        """The spacing margin in force now (learned, unless fixed)."""
        if self.tuner is None:
            return self._fixed_margin
        return self.tuner.margin(self._clock())

    def observe(self, round_trip: float) -> None:
        """One request's round trip (s): its spread teaches the margin."""
        if self.tuner is not None:
            self.tuner.observe(round_trip)

    @property
    def current_rate(self) -> float:
        """The rate in force now (lower for a while after a 429)."""
        return self._rate * self._fraction_at(self._clock())

    def _fraction_at(self, now: float) -> float:
        if self._fraction >= 1.0:
            return 1.0
        progress = (now - self._penalized_at) / self.recovery if self.recovery > 0 else 1.0
        if progress >= 1.0:
            self._fraction = 1.0
            return 1.0
        return self._fraction + (1.0 - self._fraction) * max(0.0, progress)

    def _interval(self, now: float) -> float:
        return (1.0 + self.margin) / (self._rate * self._fraction_at(now))

    def _slot(self, now: float) -> float:
        """The next free slot: the schedule's, unless the limiter sat idle (then now)."""
        slot = max(self._tat, self._blocked_until)
        return slot if slot >= now - self.slack else now

    def _take(self, slot: float) -> None:
        interval = self._interval(slot)
        self._tat = slot + interval
        self.grants += 1
        if self.tuner is not None:  # the spacing each grant got, for a later 429 to judge
            self._spacings.append((slot, interval * self._rate - 1.0))

    async def acquire(self, priority: Priority = Priority.HIGH) -> answer_clock.Ticket | None:
        """Wait for one token: ``HIGH`` goes first, ``BULK`` queues FIFO behind it. Pacing by
        answers, the returned ticket must be told what became of the request (see
        :class:`Grant`); otherwise None. Cancelling the wait gives an unused slot back."""
        if self.answers is not None:
            return await self._acquire_by_answers(priority == Priority.HIGH)
        if priority == Priority.HIGH:
            if self.tuner is not None and self.tuner.learning:
                # No slots reserved ahead while the margin is still a guess: each grant takes
                # the margin known when it is due (and goes before the bulk queue's head).
                self._high_waiting += 1
                try:
                    await self._take_when_due(high=True)
                finally:
                    self._high_waiting -= 1
            else:
                await self._acquire_high()
            return None
        if self._bulk_lock is None:
            self._bulk_lock = asyncio.Lock()
        async with self._bulk_lock:
            await self._take_when_due(high=False)
        return None

    async def _acquire_by_answers(self, high: bool) -> answer_clock.Ticket:
        """One waiter per lane at a time (FIFO locks), so an answer wakes two coroutines, not
        every caller. The head takes its slot only when due: when the spacing, any 429 pause
        and the answer clock all allow it (a ``BULK`` head also waits while a ``HIGH`` one
        does)."""
        assert self.answers is not None
        arrived = self._clock()  # before the lane's queue: a queued caller is not idle
        if high:
            self._high_waiting += 1
        try:
            lock = self._lane_lock(high)
            async with lock:
                while True:
                    now = self._clock()
                    slot = self._catch_up_slot(arrived, now)
                    due = max(
                        slot,
                        self._last_grant + self._interval(now) * MIN_GAP,
                        self._blocked_until,
                        self.answers.ready_at(),
                    )
                    if due <= now and (high or not self._high_waiting):
                        self._take(slot)
                        self._last_grant = now
                        ticket = self.answers.grant()
                        self._wake()
                        return ticket
                    await self._wait_for_change(max(due - now, 0.0) if due > now else None)
        finally:
            if high:
                self._high_waiting -= 1
                if not self._high_waiting:
                    self._wake()

    def _catch_up_slot(self, arrived: float, now: float) -> float:
        """The schedule's slot for a head that began waiting at ``arrived``. A slot the answer
        clock held back stays where it was, so the grants after it catch up (at most
        ``CATCH_UP`` s of them, at up to twice the rate: the answer clock still bounds every
        second); a limiter that sat idle starts afresh, without a burst."""
        slot = max(self._tat, self._blocked_until)
        if slot < arrived - self.slack:
            return arrived
        return max(slot, now - CATCH_UP)

    def _lane_lock(self, high: bool) -> asyncio.Lock:
        if high:
            if self._high_lock is None:
                self._high_lock = asyncio.Lock()
            return self._high_lock
        if self._bulk_lock is None:
            self._bulk_lock = asyncio.Lock()
        return self._bulk_lock

    def _wake(self) -> None:
        """Something the waiting heads depend on changed (an answer, a grant, a pause)."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def _wait_for_change(self, delay: float | None) -> None:
        """Until ``delay`` s passed (None: no limit) or something changed, whichever first."""
        if self._changed is None:
            self._changed = asyncio.Event()
        waiters: set[asyncio.Future[object]] = {asyncio.ensure_future(self._changed.wait())}
        if delay is not None:
            waiters.add(asyncio.ensure_future(self._sleep(delay)))
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _take_when_due(self, *, high: bool) -> None:
        while True:
            now = self._clock()
            slot = self._slot(now)
            if slot <= now and (high or not self._high_waiting):
                self._take(slot)
                return
            await self._sleep(max(slot - now, 0.001))

    async def _acquire_high(self) -> None:
        while True:
            now = self._clock()
            slot = self._slot(now)
            self._take(slot)
            reserved_tat = self._tat
            if slot > now:
                try:
                    await self._sleep(slot - now)
                except BaseException:
                    self._release(slot, reserved_tat)
                    raise
            # A 429 that arrived while we waited voids slots inside its pause.
            if slot < self._blocked_until:
                self.grants -= 1
                continue
            now = self._clock()
            # Any window of `rate` + 1 grants spans 1 s + margin - lateness: lateness up to half
            # the margin is safe and leaves the other half for arrival jitter.
            if now - slot <= max(self.slack, self.margin / 2, LATE_WAKE_TOLERANCE):
                return
            # Woken late (a busy loop): sending now would squeeze this grant against the
            # later slots already promised. If none are, restart the schedule from now;
            # otherwise take a fresh slot at the end of the queue.
            if self._tat == reserved_tat:
                self._tat = now + self._interval(now)
                return
            self.grants -= 1

    def _release(self, slot: float, reserved_tat: float) -> None:
        if self._tat == reserved_tat:  # nobody reserved after us: give the slot back
            self._tat = slot
            self.grants -= 1

    async def penalize(self, delay: float, *, retry_after: float | None = None) -> None:
        """A 429: pause for ``delay`` s. If a wider margin can explain it (arrivals bunched by
        jitter), widen the margin and keep the rate; otherwise (a competitor, a server-side
        cut, or a fixed margin) halve the rate, which recovers over ``recovery`` s."""
        now = self._clock()
        self.throttles += 1
        if self.tuner is None or self.tuner.on_throttle(now, retry_after, self._spacing(now)):
            self._fraction = max(self.min_fraction, self._fraction_at(now) / 2)
            self._penalized_at = now
        self.pause(delay)

    def _spacing(self, now: float) -> float | None:
        """The smallest margin among the grants of the last two seconds (the ones a 429 can
        be about), or None when there were none."""
        recent = [m for at, m in self._spacings if now - 2.0 <= at <= now]
        return min(recent) if recent else None

    def pause(self, delay: float) -> None:
        """Grant nothing for ``delay`` seconds (without slowing down afterwards)."""
        self._blocked_until = max(self._blocked_until, self._clock() + max(0.0, delay))


_shared: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, RateLimiter]] = (
    weakref.WeakKeyDictionary()
)


def shared_limiter(key: str, rate: float) -> RateLimiter:
    """The process-wide limiter for a campaign (per event loop), created on first use.

    Two clients of one campaign share one budget; if they ask for different rates, the lower
    one is in force for both.
    """
    loop = asyncio.get_running_loop()
    limiters = _shared.setdefault(loop, {})
    limiter = limiters.get(key)
    if limiter is None:
        limiter = limiters[key] = RateLimiter(rate)
    elif rate < limiter.rate:
        limiter.rate = rate
    return limiter
