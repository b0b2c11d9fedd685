"""The simulator's rate limiter (per campaign, shared by every endpoint) and its ground truth.

Modes: ``sliding`` (strict: at most ``rate`` admissions in any window of one second, the
default), ``fixed`` (per calendar second) and ``token_bucket`` (aiolimiter's leaky bucket,
which lets a burst through, as a lenient server might). A "competing client" takes a share of
the budget with evenly spaced phantom calls.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Sequence

from aiolimiter import AsyncLimiter

MODES = ("sliding", "fixed", "token_bucket")


class CampaignRateLimiter:
    def __init__(
        self,
        rate: float,
        *,
        mode: str = "sliding",
        clock: Callable[[], float],
        competing_share: float = 0.0,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.rate = rate
        self.mode = mode
        self._clock = clock
        self._limit = max(1, math.floor(rate + 1e-9))
        self._window: deque[float] = deque()
        self._fixed_second = -1
        self._fixed_count = 0
        self._bucket: AsyncLimiter | None = None
        self.competing_share = competing_share
        self._phantom_next: float | None = None
        self.competitor_admitted = 0
        self.competitor_rejected = 0

    async def _admit_at(self, now: float) -> bool:
        if self.mode == "sliding":
            while self._window and self._window[0] <= now - 1.0:
                self._window.popleft()
            if len(self._window) >= self._limit:
                return False
            self._window.append(now)
            return True
        if self.mode == "fixed":
            second = math.floor(now)
            if second != self._fixed_second:
                self._fixed_second, self._fixed_count = second, 0
            if self._fixed_count >= self._limit:
                return False
            self._fixed_count += 1
            return True
        if self._bucket is None:
            self._bucket = AsyncLimiter(self.rate, 1.0)
        if not self._bucket.has_capacity():
            return False
        await self._bucket.acquire()  # has capacity, so this returns without waiting
        return True

    async def _run_competitor(self, now: float) -> None:
        if self.competing_share <= 0:
            return
        spacing = 1.0 / (self.competing_share * self.rate)
        if self._phantom_next is None:
            self._phantom_next = now
        while self._phantom_next <= now:
            if await self._admit_at(self._phantom_next):
                self.competitor_admitted += 1
            else:
                self.competitor_rejected += 1
            self._phantom_next += spacing

    async def admit(self) -> bool:
        """Take one call's slot now; False means the call must get a 429."""
        now = self._clock()
        await self._run_competitor(now)
        return await self._admit_at(now)


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most timestamps (sorted) that fall in any half-open window of ``window`` seconds."""
    best = 0
    for index, start in enumerate(times):
        end = bisect.bisect_left(times, start + window, lo=index)
        best = max(best, end - index)
    return best
