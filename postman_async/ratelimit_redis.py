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
  are ``(1 + margin) / rate`` apart, and ``margin`` (default 10 ms per second) absorbs the
  jitter between a grant and its arrival at the server.
- Lanes: a ``HIGH`` call reserves the next free slot at once, from any process. ``BULK``
  calls (one at a time per process) reserve only a slot due within one interval; otherwise
  they wait and ask again. So an urgent call from any process waits at most about two
  intervals (the slot being served plus at most one bulk reservation), never behind queued
  bulk work.
- A 429 seen by any process pauses the whole campaign for the delay and halves its rate, then
  the rate recovers linearly over ``recovery`` seconds. The state is shared in Redis.
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

from .errors import RateLimiterUnavailableError
from .models import Priority
from .ratelimit import Clock, RateLimiter, Sleep

logger = logging.getLogger("postman_async")

try:
    import redis.asyncio as aioredis
    from redis.exceptions import RedisError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'RedisRateLimiter needs redis-py: pip install "postman-async[redis]"'
    ) from exc

__all__ = ["RateLimiterUnavailableError", "RedisRateLimiter"]


# KEYS: tat, blocked, penalty. ARGV: interval_us, slack_us, bulk (0/1), recovery_us, ttl_ms.
# Returns {reserved (1/0), wait_us}.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local slack = tonumber(ARGV[2])
local bulk = tonumber(ARGV[3])
local recovery = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
local pen = redis.call('HMGET', KEYS[3], 'fraction', 'at')
local fraction = tonumber(pen[1] or '1')
if fraction < 1 then
  local progress = (now - tonumber(pen[2] or '0')) / recovery
  if progress >= 1 then fraction = 1 else fraction = fraction + (1 - fraction) * progress end
end
local slot = math.max(tat, blocked)
if slot < now - slack then slot = now end
local step = math.floor(interval / fraction)
if bulk == 1 and slot > now + step then
  return {0, slot - now - step}
end
redis.call('SET', KEYS[1], slot + step, 'PX', ttl)
return {1, slot - now}
"""

# KEYS: blocked, penalty. ARGV: delay_us, min_fraction, recovery_us, ttl_ms, halve (0/1).
_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local delay = tonumber(ARGV[1])
local blocked = tonumber(redis.call('GET', KEYS[1]) or '0')
if now + delay > blocked then
  redis.call('SET', KEYS[1], now + delay, 'PX', tonumber(ARGV[4]) + math.floor(delay / 1000))
end
if tonumber(ARGV[5]) == 1 then
  local pen = redis.call('HMGET', KEYS[2], 'fraction', 'at')
  local fraction = tonumber(pen[1] or '1')
  if fraction < 1 then
    local progress = (now - tonumber(pen[2] or '0')) / tonumber(ARGV[3])
    if progress >= 1 then fraction = 1 else fraction = fraction + (1 - fraction) * progress end
  end
  fraction = math.max(tonumber(ARGV[2]), fraction / 2)
  redis.call('HSET', KEYS[2], 'fraction', fraction, 'at', now)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[4]) + math.floor(tonumber(ARGV[3]) / 1000))
end
return 1
"""


class RedisRateLimiter:
    """Per-campaign limiter shared by every process through Redis. See the module docstring."""

    def __init__(
        self,
        redis: aioredis.Redis | str,
        *,
        campaign_id: str,
        rate: float = 10.0,
        margin: float = 0.01,
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
        self.margin = margin
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

    async def _reserve(self, bulk: bool) -> tuple[bool, float]:
        interval_us = int((1.0 + self.margin) / self._rate * 1e6)
        reserved, wait_us = await self._run(
            self._acquire_script,
            self._keys,
            [
                interval_us,
                int(self.slack * 1e6),
                int(bulk),
                int(self.recovery * 1e6),
                self._ttl_ms(),
            ],
        )
        return bool(reserved), max(0, int(wait_us)) / 1e6

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
            await self._run(
                self._penalize_script,
                self._keys[1:],
                [1_000_000, self.min_fraction, int(self.recovery * 1e6), self._ttl_ms(), 0],
            )
            self._was_down = False
            logger.info("Redis is back: shared rate limiting resumed")
        if priority == Priority.HIGH:
            _, wait = await self._reserve(bulk=False)
            if wait > 0:
                await self._sleep(wait)
            self.grants += 1
            return
        if self._bulk_lock is None:
            self._bulk_lock = asyncio.Lock()
        async with self._bulk_lock:
            while True:
                reserved, wait = await self._reserve(bulk=True)
                if reserved:
                    if wait > 0:
                        await self._sleep(wait)
                    self.grants += 1
                    return
                await self._sleep(max(wait, 0.001))

    async def penalize(self, delay: float) -> None:
        if self._fallback is not None:
            await self._fallback.penalize(delay)
        try:
            await self._run(
                self._penalize_script,
                self._keys[1:],
                [
                    int(max(0.0, delay) * 1e6),
                    self.min_fraction,
                    int(self.recovery * 1e6),
                    self._ttl_ms(),
                    1,
                ],
            )
        except (RedisError, OSError) as exc:
            logger.warning("could not share a 429 back-off through Redis: %s", exc)
