"""The spacing margin a network needs, learned rather than fixed. Pure: no I/O; time is given.

Grants spaced ``(1 + margin) / rate`` apart reach the server up to the network's jitter apart
in the other direction, so a sliding second at the server holds ``rate + 1`` calls once the
jitter exceeds ``margin`` seconds (PERF-NOTES, "Network jitter"). Too small a margin costs
429s, each a lost call and a pause; too large a one costs rate. The margin in force is the
larger of two estimates:

- **from latency**: ``LATENCY_FACTOR`` times the spread (10th to 90th percentile) of recent
  round trips. Both legs of a round trip jitter; for uniform jitter J on each, that spread
  of their sum is about 1.1 J, so the margin lands just above one leg's jitter. The trimmed
  band ignores the slow first request of a new connection. Until enough round trips have
  been seen, a cautious ``START`` margin stands in.
- **from 429s**: a 429 while the margin is below its ceiling is taken for jitter (arrivals
  bunched up), and the margin is widened at once (by a quarter, and by 10 ms at least)
  without cutting the rate: a margin wider than needed costs rate for as long as it lasts.
  After ``HOLD`` quiet seconds it decays back with a half-life of ``HALF_LIFE``.

A 429 that a wider margin cannot cure (the margin is already at its ceiling) or that carries a
``Retry-After`` longer than one window is taken for a competing client or a server-side cut:
the caller lowers the rate as before.
"""

from __future__ import annotations

import bisect
import collections
import math

FLOOR = 0.003  # 3 ms per second of budget: timer lateness (the 2 ms slack) and server noise
START = 0.1  # until LATENCY_SAMPLES round trips are seen (one second at 10/s)
CEILING = 0.16  # beyond this the budget lost to spacing exceeds what a 429 costs
LATENCY_FACTOR = 0.9
LATENCY_SAMPLES = 10
TRIM_FROM = 40  # samples before the 10th-90th percentile band replaces the whole range
WINDOW = 100  # round trips kept: about 10 s at 10/s
WIDEN_BY = 0.25
WIDEN_AT_LEAST = 0.01
HOLD = 30.0
HALF_LIFE = 60.0
#: a Retry-After above this is more than the window passing: not jitter
WINDOW_RETRY_AFTER = 1.5


class MarginTuner:
    """Learns the spacing margin (a fraction of the interval: 0.01 is 10 ms per second)."""

    def __init__(
        self, *, floor: float = FLOOR, start: float = START, ceiling: float = CEILING
    ) -> None:
        if not 0 <= floor <= ceiling:
            raise ValueError("need 0 <= floor <= ceiling")
        self.floor = floor
        self.start = min(max(start, floor), ceiling)
        self.ceiling = ceiling
        self._samples: collections.deque[float] = collections.deque(maxlen=WINDOW)
        self._sorted: list[float] = []
        self._from_latency = self.start
        self._learned = floor
        self._learned_at = -float("inf")
        self.widenings = 0

    def observe(self, round_trip: float) -> None:
        """One request's round trip (s), whatever its answer."""
        if len(self._samples) == self._samples.maxlen:
            old = self._samples[0]
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._samples.append(round_trip)
        bisect.insort(self._sorted, round_trip)
        count = len(self._sorted)
        if count >= LATENCY_SAMPLES:
            # Few samples understate a band: use their whole range until there are enough.
            trim = count // 10 if count >= TRIM_FROM else 0
            spread = self._sorted[count - 1 - trim] - self._sorted[trim]
            self._from_latency = self.floor + LATENCY_FACTOR * spread

    @property
    def learning(self) -> bool:
        """Too few round trips seen yet: the margin is the cautious ``start``."""
        return len(self._samples) < LATENCY_SAMPLES

    @property
    def margin_from_latency(self) -> float:
        """The estimate from round trips alone (``start`` until enough are seen)."""
        return self._from_latency

    def learned(self, now: float) -> float:
        """What 429s taught, decayed while quiet."""
        quiet = now - self._learned_at - HOLD
        if quiet <= 0:
            return self._learned
        return self.floor + (self._learned - self.floor) * math.pow(0.5, quiet / HALF_LIFE)

    def margin(self, now: float) -> float:
        """The margin in force at ``now``."""
        return min(self.ceiling, max(self._from_latency, self.learned(now)))

    def on_throttle(
        self, now: float, retry_after: float | None, spacing: float | None = None
    ) -> bool:
        """A 429 arrived. Widen the margin if it can cure it; True means it cannot (a
        competitor, or the server cut the rate): the caller should lower the rate.

        ``spacing``: the smallest margin the grants of the last moments were spaced with, when
        known. Those were the grants that bunched up; slots reserved under an earlier, smaller
        margin say nothing against the margin in force now."""
        if retry_after is not None and retry_after > WINDOW_RETRY_AFTER:
            return True
        base = self.margin(now) if spacing is None else min(spacing, self.margin(now))
        if base >= self.ceiling:
            return True
        widened = min(self.ceiling, base + max(WIDEN_BY * base, WIDEN_AT_LEAST))
        self._learned = max(self.learned(now), widened)
        self._learned_at = now
        self.widenings += 1
        return False
