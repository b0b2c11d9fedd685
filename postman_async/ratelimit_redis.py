"""A campaign rate limiter shared by many processes through Redis (``pip install
"postman-async[redis]"``).

It is a drop-in for the in-process :class:`~postman_async.ratelimit.RateLimiter` through the
same interface (``acquire(priority)``, ``penalize(delay)``): pass it as
``PostmanClient(..., limiter=RedisRateLimiter(redis, campaign_id=...))``.

How it works:

- The schedule lives in Redis. One Lua script runs a GCRA **reservation** atomically, on
  Redis's own clock (``TIME``), in one round trip per acquire. It reserves the next free slot
  and returns how long to wait; the caller sleeps that long and does not poll. Keys are
  hash-tagged by campaign (``postman_async:{campaign_id}:...``), so it works on Redis Cluster.
- Guarantee: at most ``rate`` admissions in any sliding second across every process. Slots
  are ``(1 + margin) / rate`` apart, and ``margin`` absorbs the jitter between a grant and
  its arrival at the server. It is learned as in :mod:`postman_async.margin`: each process
  follows its own round trips (lateness floor 8 ms per second), and what jitter 429s teach is stored
  in Redis for every process. A fixed ``margin`` turns the learning off.
- Lanes: a ``HIGH`` call reserves the next free slot at once, from any process. ``BULK``
  calls (one at a time per process) reserve only a slot due within one interval; otherwise
  they wait and ask again. So an urgent call from any process waits at most about two
  intervals (the slot being served plus at most one bulk reservation), never behind queued
  bulk work.
- A grant whose caller wakes later than half the margin (5 ms at least) after its slot, as a
  busy host's processes do, is not sent: it takes a fresh slot. Sent late, it would land
  against the slots other processes reserved after it (counted in ``late_requeues``).
- A 429 seen by any process pauses the whole campaign for the delay. If a wider margin can
  cure it, the shared margin widens; otherwise (a competitor) the campaign's rate halves and
  recovers linearly over ``recovery`` seconds. The state is shared in Redis.
- Redis unavailable: :class:`RateLimiterUnavailableError` by default (the budget is never
  silently exceeded). With ``fallback_rate`` set, a local limiter at that rate takes over,
  for example ``rate / number_of_processes`` as a conservative share. Redis is tried again
  every ``retry_interval`` seconds. Each switch waits out one window: going to the fallback,
  the process pauses locally for a second; coming back, it pauses the campaign for a second.
  Fallback grants and shared grants therefore never share a window.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from . import margin as margin_rules
from .errors import RateLimiterUnavailableError
from .margin import MarginTuner
from .models import Priority
from .ratelimit import LATE_WAKE_TOLERANCE, Clock, RateLimiter, Sleep

logger = logging.getLogger("postman_async")

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'RedisRateLimiter needs redis-py: pip install "postman-async[redis]"'
    ) from exc

__all__ = ["RateLimiterUnavailableError", "RedisRateLimiter"]

REDIS_FLOOR = 0.008
#: late wakes in a row after which a grant is sent anyway (a loop this slow cannot do better)
MAX_LATE_REQUEUES = 3


# The margin that 429s taught, shared by every process (fields m, mat of the penalty hash),
# decayed as in postman_async.margin. ARGV tail: floor, hold_us, half_life_us.
_LEARNED = """
local function learned(pen, now, floor, hold, half_life)
  local m = tonumber(pen[3] or '') or floor
  local quiet = now - tonumber(pen[4] or '0') - hold
  if quiet <= 0 then return m end
  return floor + (m - floor) * math.pow(0.5, quiet / half_life)
end
local function fraction_at(pen, now, recovery)
  local fraction = tonumber(pen[1] or '1')
  if fraction < 1 then
    local progress = (now - tonumber(pen[2] or '0')) / recovery
    if progress >= 1 then fraction = 1 else fraction = fraction + (1 - fraction) * progress end
  end
  return fraction
end
"""

# KEYS: tat, blocked, penalty. ARGV: base_interval_us, slack_us, bulk (0/1), recovery_us,
# ttl_ms, local margin, learn (0/1), ceiling, floor, hold_us, half_life_us.
# Returns {reserved (1/0), wait_us}.
_ACQUIRE = (
    _LEARNED
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local base = tonumber(ARGV[1])
local slack = tonumber(ARGV[2])
local bulk = tonumber(ARGV[3])
local ttl = tonumber(ARGV[5])
local margin = tonumber(ARGV[6])
local pen = redis.call('HMGET', KEYS[3], 'fraction', 'at', 'm', 'mat')
if tonumber(ARGV[7]) == 1 then
  local shared = learned(pen, now, tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]))
  margin = math.min(tonumber(ARGV[8]), math.max(margin, shared))
end
local fraction = fraction_at(pen, now, tonumber(ARGV[4]))
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
local slot = math.max(tat, blocked)
if slot < now - slack then slot = now end
local step = math.floor(base * (1 + margin) / fraction)
if bulk == 1 and slot > now + step then
  return {0, slot - now - step}
end
redis.call('SET', KEYS[1], slot + step, 'PX', ttl)
return {1, slot - now}
"""
)

# KEYS: blocked, penalty. ARGV: delay_us, min_fraction, recovery_us, ttl_ms, mode (0: pause
# only; 1: a 429), retry_after_us (-1: none), local margin, learn (0/1), ceiling, floor,
# hold_us, half_life_us, window_retry_after_us. A 429 that a wider margin can cure widens the
# shared margin; otherwise it halves the shared rate. Returns 1 when it halved the rate.
_PENALIZE = (
    _LEARNED
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local delay = tonumber(ARGV[1])
local ttl = tonumber(ARGV[4]) + math.floor(tonumber(ARGV[3]) / 1000)
local blocked = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + delay > blocked then
  redis.call('SET', KEYS[1], now + delay, 'PX', tonumber(ARGV[4]) + math.floor(delay / 1000))
end
if tonumber(ARGV[5]) == 0 then return 0 end
local pen = redis.call('HMGET', KEYS[2], 'fraction', 'at', 'm', 'mat')
local ceiling = tonumber(ARGV[9])
local retry_after = tonumber(ARGV[6])
if tonumber(ARGV[8]) == 1 and retry_after <= tonumber(ARGV[13]) then
  local floor = tonumber(ARGV[10])
  local shared = learned(pen, now, floor, tonumber(ARGV[11]), tonumber(ARGV[12]))
  local current = math.min(ceiling, math.max(tonumber(ARGV[7]), shared))
  if current < ceiling then
    local widened = math.min(ceiling, current + math.max(0.25 * current, 0.01))
    redis.call('HSET', KEYS[2], 'm', widened, 'mat', now)
    redis.call('PEXPIRE', KEYS[2], ttl + math.floor(tonumber(ARGV[11]) / 1000) * 10)
    return 0
  end
end
local fraction = math.max(tonumber(ARGV[2]), fraction_at(pen, now, tonumber(ARGV[3])) / 2)
redis.call('HSET', KEYS[2], 'fraction', fraction, 'at', now)
redis.call('PEXPIRE', KEYS[2], ttl + math.floor(tonumber(ARGV[11]) / 1000) * 10)
return 1
"""
)


class RedisRateLimiter:
    """Per-campaign limiter shared by every process through Redis. See the module docstring."""

    def __init__(
        self,
        redis: aioredis.Redis | str,
        *,
        campaign_id: str,
        rate: float = 10.0,
        margin: float | None = None,
        slack: float = 0.002,
        recovery: float = 30.0,
        min_fraction: float = 0.25,
        fallback_rate: float | None = None,
        retry_interval: float = 1.0,
        namespace: str = "postman_async",
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be > 0")
        if fallback_rate is not None and not 0 < fallback_rate <= rate:
            raise ValueError("fallback_rate must be in (0, rate]")
        self._redis = (
            aioredis.Redis.from_url(redis, socket_timeout=2.0, socket_connect_timeout=2.0)
            if isinstance(redis, str)
            else redis
        )
        self._owns_redis = isinstance(redis, str)
        self._rate = float(rate)
        #: this process's latency-based margin (None: ``margin`` is fixed, nothing learned).
        #: Its floor is 8 ms per second, not 3: a grant reaches its caller one Redis round
        #: trip after Redis reserved it, and that leg jitters too (p99 10-20 ms measured with
        #: 4 processes on 2 cores).
        self.tuner = MarginTuner(floor=REDIS_FLOOR) if margin is None else None
        self._fixed_margin = margin or 0.0
        self.slack = slack
        self.recovery = recovery
        self.min_fraction = min_fraction
        tag = f"{namespace}:{{{campaign_id}}}"
        self._keys = (f"{tag}:tat", f"{tag}:blocked", f"{tag}:penalty")
        self._acquire_script = self._redis.register_script(_ACQUIRE)
        self._penalize_script = self._redis.register_script(_PENALIZE)
        self._fallback = (
            RateLimiter(fallback_rate, clock=clock, sleep=sleep) if fallback_rate else None
        )
        self.retry_interval = retry_interval
        self._down_until = -float("inf")
        self._was_down = False
        self._clock = clock
        self._sleep = sleep
        self._bulk_lock: asyncio.Lock | None = None
        #: Seconds per Redis round trip of the last acquires (for the benchmark).
        self.redis_latencies: collections.deque[float] = collections.deque(maxlen=100_000)
        self.grants = 0
        self.fallback_grants = 0
        #: grants woken too late to send, which took a fresh slot instead
        self.late_requeues = 0
        self.throttles = 0
        self.rate_cuts = 0

    @property
    def rate(self) -> float:
        return self._rate

    async def aclose(self) -> None:
        if self._owns_redis:
            await self._redis.aclose()

    def _ttl_ms(self) -> int:
        return int(60_000 + 2000 / self._rate)

    async def _run(self, script: Any, keys: tuple[str, ...], args: list[Any]) -> Any:
        started = time.perf_counter()
        result = await script(keys=list(keys), args=args)
        self.redis_latencies.append(time.perf_counter() - started)
        return result

    def observe(self, round_trip: float) -> None:
        """One request's round trip (s): its spread sets this process's margin."""
        if self.tuner is not None:
            self.tuner.observe(round_trip)

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

    async def acquire(self, priority: Priority = Priority.HIGH) -> None:
        if self._clock() < self._down_until and self._fallback is not None:
            await self._acquire_fallback(priority)
            return
        try:
            await self._acquire_shared(priority)
        except (RedisError, OSError) as exc:
            if self._fallback is None:
                raise RateLimiterUnavailableError(
                    f"the shared rate limiter (Redis) is unavailable: {type(exc).__name__}; "
                    "not sending, so as not to exceed the campaign's budget"
                ) from exc
            logger.warning(
                "Redis unavailable (%s): falling back to a local share of %.2f/s",
                type(exc).__name__,
                self._fallback.rate,
            )
            self._down_until = self._clock() + self.retry_interval
            if not self._was_down:
                # Shared grants of the last second may be up to the whole rate: keep our
                # local grants out of that window.
                self._fallback.pause(1.0)
            self._was_down = True
            await self._acquire_fallback(priority)

    async def _acquire_fallback(self, priority: Priority) -> None:
        assert self._fallback is not None
        await self._fallback.acquire(priority)
        self.fallback_grants += 1

    async def _acquire_shared(self, priority: Priority) -> None:
        if self._was_down:
            # Back from the fallback: keep our recent local grants out of every shared window.
            await self._penalize_shared(1.0, None, pause_only=True)
            self._was_down = False
            logger.info("Redis is back: shared rate limiting resumed")
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

    async def penalize(self, delay: float, *, retry_after: float | None = None) -> None:
        """A 429 seen by this process: pause every process of the campaign for ``delay`` s;
        widen the shared margin if that can cure it, else halve the shared rate."""
        if self._fallback is not None:
            await self._fallback.penalize(delay, retry_after=retry_after)
        try:
            await self._penalize_shared(delay, retry_after)
        except (RedisError, OSError) as exc:
            logger.warning("could not share a 429 back-off through Redis: %s", exc)

    async def _penalize_shared(
        self, delay: float, retry_after: float | None, *, pause_only: bool = False
    ) -> None:
        self.throttles += not pause_only
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
                *self._margin_args(),
                int(margin_rules.WINDOW_RETRY_AFTER * 1e6),
            ],
        )
        self.rate_cuts += int(halved)
