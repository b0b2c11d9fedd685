"""Per-campaign rate limiting: a no-burst GCRA with priority lanes that slows down after a 429.

Why not ``aiolimiter.AsyncLimiter(10, 1)``: it admits a burst of 10 and then 10 more within the
same second (19-20 in a sliding second, measured), and the server drops what exceeds 10.

The margin is learned (:mod:`postman_async.margin`): it starts cautious, follows the spread of
the campaign's round trips, widens at once on a 429 that jitter explains (without cutting the
rate), and decays back when quiet; about 3.6 ms per second of budget on a quiet loopback. A
fixed ``margin`` (e.g. the previous default, 0.01) turns the learning off.

The schedule: grants are spaced ``interval = (1 + margin) / rate`` apart, so any sliding second
holds at most ``rate`` of them even when timers fire a few ms late (``margin`` absorbs arrival
jitter at the server). A grant that comes up to ``slack`` late keeps its place in the schedule
instead of pushing every later grant back, so the achieved rate stays at the design rate.

Lanes: a ``HIGH`` caller reserves the next free slot at once. ``BULK`` callers queue FIFO and the
head of that queue reserves a slot only when the slot is due, so an urgent call that arrives
while a bulk job saturates the budget waits at most about one interval.

A grant is never sent more than 5 ms (or half the margin, if larger) after its slot while later
slots are promised: a waiter woken later than that by a busy event loop re-queues instead, so a
stall cannot squeeze its grant against the slots promised after it. While the margin is still
a guess (its first 10 round trips) ``HIGH`` callers take slots only when due, ahead of the
``BULK`` queue, so nothing is reserved on that guess.
"""

from __future__ import annotations

import asyncio
import collections
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from .margin import MarginTuner
from .models import Priority

Clock = Callable[[], float]
#: A HIGH grant woken this late (s) is still sent; later, it re-queues (see the module doc).
LATE_WAKE_TOLERANCE = 0.005
Sleep = Callable[[float], Awaitable[None]]


@runtime_checkable
class Limiter(Protocol):
    """What the session layer needs from a campaign limiter (in-process or Redis).

    A limiter may also have ``observe(round_trip: float)``: the session then reports each
    request's round trip (s), from which the limiter can learn the network's jitter."""

    @property
    def rate(self) -> float:
        """The campaign's rate (calls per second) this limiter holds to."""
        ...

    async def acquire(self, priority: Priority = Priority.HIGH) -> None:
        """Wait for one token of the campaign's budget."""

    async def penalize(self, delay: float, *, retry_after: float | None = None) -> None:
        """The server throttled us: pause the campaign for ``delay`` s, and widen the spacing
        or slow down (``retry_after``: the server's hint, when it sent one)."""


class RateLimiter:
    """In-process per-campaign limiter. See the module docstring for the guarantees."""

    def __init__(
        self,
        rate: float = 10.0,
        *,
        margin: float | None = None,
        slack: float = 0.002,
        recovery: float = 30.0,
        min_fraction: float = 0.25,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        self._rate = float(rate)
        #: learns the margin; None when a fixed ``margin`` was given
        self.tuner = MarginTuner() if margin is None else None
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
        self._high_waiting = 0
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

    async def acquire(self, priority: Priority = Priority.HIGH) -> None:
        """Wait for one token: ``HIGH`` takes the next free slot, ``BULK`` queues FIFO behind
        it. Cancelling the wait gives an unused slot back."""
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
            return
        if self._bulk_lock is None:
            self._bulk_lock = asyncio.Lock()
        async with self._bulk_lock:
            await self._take_when_due(high=False)

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
