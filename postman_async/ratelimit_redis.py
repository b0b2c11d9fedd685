"""A campaign rate limiter shared by many processes through Redis (``pip install
"postman-async[redis]"``).

It is a drop-in for the in-process :class:`~postman_async.ratelimit.RateLimiter` through the
same interface (``acquire(priority)``, ``penalize(delay)``): pass it as
``PostmanClient(..., limiter=RedisRateLimiter(redis, campaign_id=...))``. Every process of a
campaign must use the same ``pacing``.

How it works (``pacing="answers"``, the default):

- The campaign's **answer clock** (:mod:`postman_async.answer_clock`) lives in Redis: the
  ``(k + R)``-th grant from any process (``R`` = rate x 1 s) is due no earlier than one
  second after the ``k``-th request's answer, from any process, less the credit (half the
  smallest round trip that process saw). A request not answered yet holds its ``R``-th
  successor until its answer or its deadline (its write, or its slot, + 2 s); one never
  written does not count. So no sliding second at the server holds more than ``R`` calls,
  however the network delays them and however late a stalled process writes.
- One Lua script, on Redis's own clock (``TIME``), takes the reports along and reserves slots:
  one round trip per acquire at most. Reports carry their age, not a time, so no clock offset
  between processes enters (a report that travels makes its time later, never earlier).
  They are sent by a background flusher or ride along with the next reservation: never on a
  request's critical path. Keys are hash-tagged by campaign (``postman_async:{campaign}:...``,
  so it works on Redis Cluster) and expire after a minute unused.
- In each process one driver per lane reserves slots and hands them to the callers FIFO: no
  herd of callers polls Redis. ``HIGH`` reserves every slot whose gate is known. ``BULK`` is
  only *promised* slots, confirmed 5 ms before each is due, and a ``HIGH`` call from any
  process takes over the earliest promise: an urgent call waits for no queued bulk work, and
  the ``BULK`` drivers of many processes do not all ask Redis for every slot (about two
  round trips per grant, one with ``HIGH``). A process with ``HIGH`` callers waiting asks
  nothing for ``BULK``. A caller that wakes late still sends: its successor waits for its
  answer, so no slot is wasted (one that wakes more than half the cap late queues again:
  the cap is the answer clock's one assumption).
- A 429 seen by any process pauses the whole campaign for the delay and halves the shared rate
  (a competitor, or a cut on the server's side), which recovers linearly over ``recovery`` s.
- Redis unavailable: :class:`RateLimiterUnavailableError` by default (the budget is never
  silently exceeded). With ``fallback_rate`` set, a local limiter at that rate takes over,
  for example ``rate / number_of_processes`` as a conservative share. Redis is tried again
  every ``retry_interval`` seconds. Each switch waits out one window: going to the fallback,
  the process waits until its last shared grants passed the server plus a second; coming
  back, it pauses the campaign until its fallback grants passed plus a second.

``pacing="margin"`` (or a fixed ``margin``) keeps the previous open-loop schedule: a GCRA
reservation per acquire with slots ``(1 + margin) / rate`` apart, the margin learned from the
round trips' spread and widened for every process by a jitter 429; a grant woken more than
half the margin late takes a fresh slot (``late_requeues``).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import uuid
from typing import Any, Literal

from . import margin as margin_rules
from ._redis_answers import AnswerClockClient
from ._redis_fallback import FallbackGrant
from ._redis_grants import Ask, RedisGrant, Reply, Slot
from ._redis_lua import ANSWERS, MARGIN_ACQUIRE, PENALIZE
from .answer_clock import CAP
from .errors import RateLimiterUnavailableError
from .margin import MarginTuner
from .models import Priority
from .ratelimit import CATCH_UP, LATE_WAKE_TOLERANCE, Clock, Grant, RateLimiter, Sleep

logger = logging.getLogger("postman_async")

try:
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'RedisRateLimiter needs redis-py: pip install "postman-async[redis]"'
    ) from exc

__all__ = ["RateLimiterUnavailableError", "RedisGrant", "RedisRateLimiter", "Slot"]

REDIS_FLOOR = 0.008
#: late wakes in a row after which a grant is sent anyway (a loop this slow cannot do better)
MAX_LATE_REQUEUES = 3
#: s: the server's window
WINDOW = 1.0
_TRANSIENT = (RedisError, OSError)
Pacing = Literal["answers", "margin"]


def _client(redis: aioredis.Redis | str) -> aioredis.Redis:
    """The client given, or one for the URL given (then the limiter owns and closes it)."""
    if not isinstance(redis, str):
        return redis
    return aioredis.Redis.from_url(
        redis,
        socket_timeout=2.0,
        socket_connect_timeout=2.0,
        retry=Retry(NoBackoff(), 1),  # fail over soon; a re-sent acquire is safe
    )


def _keys(tag: str) -> tuple[tuple[str, str, str], list[str]]:
    """The campaign's keys (hash-tagged by campaign): those of the margin scripts (tat,
    blocked, penalty), and those of the answers script."""
    tat, blocked, penalty = f"{tag}:tat", f"{tag}:blocked", f"{tag}:penalty"
    answers = [f"{tag}:seq", f"{tag}:order", f"{tag}:released", tat, f"{tag}:last"]
    return (tat, blocked, penalty), [*answers, blocked, penalty, f"{tag}:promised"]


class RedisRateLimiter:
    """Per-campaign limiter shared by every process through Redis. See the module docstring.

    ``acquire`` returns a :class:`RedisGrant` (pacing "answers") whose fate the session
    reports, or None (pacing "margin")."""

    def __init__(
        self,
        redis: aioredis.Redis | str,
        *,
        campaign_id: str,
        rate: float = 10.0,
        pacing: Pacing | None = None,
        margin: float | None = None,
        slack: float = 0.002,
        recovery: float = 30.0,
        min_fraction: float = 0.25,
        fallback_rate: float | None = None,
        retry_interval: float = 1.0,
        namespace: str = "postman_async",
        cap: float = CAP,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        if fallback_rate is not None and not 0 < fallback_rate <= rate:
            raise ValueError("fallback_rate must be in (0, rate]")
        if pacing not in (None, "answers", "margin"):
            raise ValueError('pacing must be "answers" or "margin"')
        #: "answers" (the default) or "margin" (also implied by a fixed ``margin``)
        self.pacing: Pacing = "margin" if margin is not None else pacing or "answers"
        self._owns_redis = isinstance(redis, str)
        self._redis: aioredis.Redis = _client(redis)
        self._rate = float(rate)
        #: pacing "margin": this process's latency-based margin (None: ``margin`` is fixed, or
        #: pacing "answers"). Its floor is 8 ms per second, not 3: a grant reaches its caller
        #: one Redis round trip after Redis reserved it, and that leg jitters too.
        self.tuner = (
            MarginTuner(floor=REDIS_FLOOR) if self.pacing == "margin" and margin is None else None
        )
        self._fixed_margin = margin or 0.0
        self.slack = slack
        self.recovery = recovery
        self.min_fraction = min_fraction
        self.cap = cap
        self._keys, self._answer_keys = _keys(f"{namespace}:{{{campaign_id}}}")
        #: this limiter's name in Redis (for the BULK promises it holds)
        self._owner = uuid.uuid4().hex
        self._acquire_script = self._redis.register_script(MARGIN_ACQUIRE)
        self._penalize_script = self._redis.register_script(PENALIZE)
        self._answers_script = self._redis.register_script(ANSWERS)
        self._fallback = (
            RateLimiter(fallback_rate, pacing=self.pacing, clock=clock, sleep=sleep)
            if fallback_rate
            else None
        )
        self.retry_interval = retry_interval
        self._down_until = -float("inf")
        self._was_down = False
        self._switched_at = -float("inf")
        self._closed = False
        self._clock = clock
        self._sleep = sleep
        self._bulk_lock: asyncio.Lock | None = None
        self._fallback_lock: asyncio.Lock | None = None
        self._resume_lock: asyncio.Lock | None = None
        self._fallback_grants: set[FallbackGrant] = set()
        self._fallback_released = -float("inf")
        #: the shared answer clock (pacing "answers")
        self.answers = (
            AnswerClockClient(
                self._reserve_answers, cap=cap, clock=clock, sleep=sleep, transient=_TRANSIENT
            )
            if self.pacing == "answers"
            else None
        )
        #: seconds per Redis round trip of the last acquires (for the benchmark)
        self.redis_latencies: collections.deque[float] = collections.deque(maxlen=100_000)
        self.grants = 0
        self.fallback_grants = 0
        #: pacing "margin": grants woken too late to send, which took a fresh slot instead
        self.late_requeues = 0
        self.throttles = 0
        self.rate_cuts = 0

    @property
    def rate(self) -> float:
        return self._rate

    async def aclose(self) -> None:
        """Stop this process's drivers and flusher (reporting what is left, briefly), and
        close the Redis client if this limiter made it (from a URL)."""
        self._closed = True
        try:
            if self.answers is not None:
                await self.answers.aclose()
            fallback_close = getattr(self._fallback, "aclose", None)
            if fallback_close is not None:
                await fallback_close()
        finally:
            if self._owns_redis:
                await self._redis.aclose()

    def _ttl_ms(self) -> int:
        return int(60_000 + 2000 / self._rate)

    async def _run(self, script: Any, keys: Any, args: list[Any], timed: bool = True) -> Any:
        started = time.perf_counter()
        result = await script(keys=list(keys), args=args)
        if timed:
            self.redis_latencies.append(time.perf_counter() - started)
        return result

    def observe(self, round_trip: float) -> None:
        """One request's round trip (s): pacing "margin" learns its margin from the spread.
        (Pacing "answers" measures round trips through its grants.)"""
        if self.tuner is not None:
            self.tuner.observe(round_trip)

    # -- acquire ------------------------------------------------------------------------

    async def acquire(self, priority: Priority = Priority.HIGH) -> Grant | None:
        """Wait for one slot of the campaign's budget. Pacing "answers" returns the
        :class:`RedisGrant` to report the request's fate to; a fallback grant is returned
        too, for the local limiter."""
        if self._closed:
            raise RateLimiterUnavailableError("the rate limiter is closed")
        if self._fallback is not None and self._clock() < self._down_until:
            return await self._acquire_fallback(priority)
        try:
            if self._was_down and not await self._resume():
                return await self._acquire_fallback(priority)
            if self.answers is None:
                await self._acquire_margin(priority)
                return None
            grant = await self.answers.acquire(priority)
        except _TRANSIENT as exc:
            return await self._redis_down(exc, priority)
        if grant is None:
            if self._closed:
                raise RateLimiterUnavailableError("the rate limiter is closed")
            return await self._redis_down(self.answers.error, priority)
        self.grants += 1
        return grant

    async def _reserve_answers(self, ask: Ask) -> Reply:
        """The answers script's round trip (see :data:`postman_async._redis_lua.ANSWERS`)."""
        args = [
            self._rate,
            int(WINDOW * 1e6),
            int(self.cap * 1e6),
            int(self.recovery * 1e6),
            self._ttl_ms(),
            ask.want,
            int(ask.bulk),
            int(self.slack * 1e6),
            int(CATCH_UP * 1e6),
            max(0, int(ask.waited * 1e6)),
            self._owner,
            len(ask.confirm),
            *ask.confirm,
            *ask.reports,
        ]
        reply = await self._run(
            self._answers_script, self._answer_keys, args, timed=bool(ask.want or ask.confirm)
        )
        # Redis read its clock before it answered: a wait counted from now is never early.
        back = self._clock()
        status, wait_us, redis_now, confirmed = (int(x) for x in reply[:4])
        first = 4 + 2 * confirmed
        slots = []
        for i in range(first, len(reply), 3):
            grant_id, at_us, why = int(reply[i]), int(reply[i + 1]), int(reply[i + 2])
            slots.append(Slot(grant_id, back + max(0, at_us - redis_now) / 1e6, at_us, why))
        return Reply(status, wait_us / 1e6, {int(x) for x in reply[4:first:2]}, slots)

    async def _redis_down(self, exc: BaseException | None, priority: Priority) -> Grant | None:
        if self._fallback is None:
            raise RateLimiterUnavailableError(
                f"the shared rate limiter (Redis) is unavailable: {type(exc).__name__}; "
                "not sending, so as not to exceed the campaign's budget"
            ) from exc
        now = self._clock()
        if not self._was_down:
            logger.warning(
                "Redis unavailable (%s): falling back to a local share of %.2f/s",
                type(exc).__name__,
                self._fallback.rate,
            )
            self._was_down = True
            self._switched_at = now
        self._down_until = max(self._down_until, now + self.retry_interval)
        return await self._acquire_fallback(priority)

    def _shared_horizon(self) -> float:
        """When this process's shared grants passed the server's limiter, at the latest."""
        if self.answers is None:
            return self._switched_at  # pacing "margin": grants are due by now
        return self.answers.horizon()

    def _fallback_horizon(self) -> float:
        latest = self._fallback_released
        for grant in self._fallback_grants:
            latest = max(latest, grant.deadline)
        return latest

    async def _acquire_fallback(self, priority: Priority) -> Grant | None:
        assert self._fallback is not None
        if self._fallback_lock is None:
            self._fallback_lock = asyncio.Lock()
        async with self._fallback_lock:  # one caller waits out the switch; the rest queue
            while (left := self._shared_horizon() + WINDOW - self._clock()) > 0:
                await self._sleep(min(left, 0.05))  # re-checked: answers move it earlier
        inner = await self._fallback.acquire(priority)
        self.fallback_grants += 1
        grant = FallbackGrant(self, inner, self._clock())
        self._fallback_grants.add(grant)
        return grant

    async def _resume(self) -> bool:
        """Back from the fallback: pause the campaign until our fallback grants passed the
        server plus a window. False: Redis is still taken for down."""
        if self._resume_lock is None:
            self._resume_lock = asyncio.Lock()
        async with self._resume_lock:
            if not self._was_down:
                return True
            if self._fallback is not None and self._clock() < self._down_until:
                return False
            pause = max(0.0, self._fallback_horizon() - self._clock()) + WINDOW
            await self._penalize_shared(pause, None, pause_only=True)
            self._was_down = False
            logger.info("Redis is back: shared rate limiting resumed")
            return True

    # -- pacing "margin" ------------------------------------------------------------------

    def _margin_args(self) -> list[Any]:
        """Local margin, learn flag, ceiling, floor, hold and half-life, for the scripts."""
        tuner = self.tuner
        local = self._fixed_margin if tuner is None else tuner.margin_from_latency
        ceiling = tuner.ceiling if tuner else self._fixed_margin
        floor = tuner.floor if tuner else self._fixed_margin
        hold, half_life = int(margin_rules.HOLD * 1e6), int(margin_rules.HALF_LIFE * 1e6)
        return [local, int(tuner is not None), ceiling, floor, hold, half_life]

    async def _reserve(self, bulk: bool) -> tuple[bool, float, float]:
        """Ask Redis for a slot: (reserved, seconds to wait, when it is due on our clock)."""
        asked = self._clock()
        reserved, wait_us = await self._run(
            self._acquire_script,
            self._keys,
            [
                int(1e6 / self._rate),
                int(self.slack * 1e6),
                int(bulk),
                int(self.recovery * 1e6),
                self._ttl_ms(),
                *self._margin_args(),
            ],
        )
        wait = max(0, int(wait_us)) / 1e6
        # Redis's clock read the slot somewhere in our round trip: take its middle.
        return bool(reserved), wait, (asked + self._clock()) / 2 + wait

    def _sent_on_time(self, due: float, late_so_far: int) -> bool:
        """As in the in-process limiter: a grant woken later than half the margin (5 ms at
        least) would squeeze against the slots reserved after it by other processes; it
        takes a fresh slot instead, up to ``MAX_LATE_REQUEUES`` times in a row."""
        local = self._fixed_margin if self.tuner is None else self.tuner.margin_from_latency
        tolerance = max(self.slack, local / 2, LATE_WAKE_TOLERANCE)
        if self._clock() - due <= tolerance or late_so_far >= MAX_LATE_REQUEUES:
            return True
        self.late_requeues += 1
        return False

    async def _acquire_margin(self, priority: Priority) -> None:
        late = 0
        if priority == Priority.HIGH:
            while True:
                _, wait, due = await self._reserve(bulk=False)
                if await self._granted(wait, due, late):
                    return
                late += 1
        if self._bulk_lock is None:
            self._bulk_lock = asyncio.Lock()
        async with self._bulk_lock:
            while True:
                reserved, wait, due = await self._reserve(bulk=True)
                if not reserved:
                    await self._sleep(max(wait, 0.001))
                    continue
                if await self._granted(wait, due, late):
                    return
                late += 1

    async def _granted(self, wait: float, due: float, late: int) -> bool:
        """Sleep until the reserved slot; True if the call may go now (else it re-reserves)."""
        if wait > 0:
            await self._sleep(wait)
        if self._sent_on_time(due, late):
            self.grants += 1
            return True
        return False

    # -- 429s -----------------------------------------------------------------------------

    async def penalize(self, delay: float, *, retry_after: float | None = None) -> None:
        """A 429 seen by this process: pause every process of the campaign for ``delay`` s.
        Pacing "answers": halve the shared rate (a competitor or a cut: the answer clock
        already rules jitter out). Pacing "margin": widen the shared margin if that can cure
        it, else halve the shared rate."""
        if self._fallback is not None:
            await self._fallback.penalize(delay, retry_after=retry_after)
        try:
            await self._penalize_shared(delay, retry_after)
        except _TRANSIENT as exc:
            logger.warning("could not share a 429 back-off through Redis: %s", exc)

    async def _penalize_shared(
        self, delay: float, retry_after: float | None, *, pause_only: bool = False
    ) -> None:
        self.throttles += not pause_only
        margin_args = self._margin_args() if self.answers is None else [0, 0, 0, 0, 1, 1]
        halved = await self._run(
            self._penalize_script,
            self._keys[1:],
            [
                int(max(0.0, delay) * 1e6),
                self.min_fraction,
                int(self.recovery * 1e6),
                self._ttl_ms(),
                int(not pause_only),
                -1 if retry_after is None else int(retry_after * 1e6),
                *margin_args,
                int(margin_rules.WINDOW_RETRY_AFTER * 1e6),
            ],
            timed=False,
        )
        self.rate_cuts += int(halved)
