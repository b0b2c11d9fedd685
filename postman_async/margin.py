"""The spacing margin a network needs, learned rather than fixed. Pure: no I/O; time is given.

Grants spaced ``(1 + margin) / rate`` apart reach the server up to the network's jitter apart
in the other direction, so a sliding second at the server holds ``rate + 1`` calls once the
jitter exceeds ``margin`` seconds (PERF-NOTES, "Network jitter"). Too small a margin costs
429s, each a lost call and a pause; too large a one costs rate. The margin in force is the
larger of two estimates:

- **from latency**: ``LATENCY_FACTOR`` times the spread (2nd to 98th percentile) of recent
  round trips. Both legs of a round trip jitter, and the spread of their sum is about 1.6
  times one leg's, so the factor lands just above one leg's jitter. Until enough round trips
  have been seen, a cautious ``START`` margin stands in.
- **from 429s**: a 429 while the margin is below its ceiling is taken for jitter (arrivals
  bunched up), and the margin is widened at once, at least doubled, without cutting the rate.
  After ``HOLD`` quiet seconds it decays back with a half-life of ``HALF_LIFE``.

A 429 that a wider margin cannot cure (the margin is already at its ceiling) or that carries a
``Retry-After`` longer than one window is taken for a competing client or a server-side cut:
the caller lowers the rate as before.
"""

from __future__ import annotations

import bisect
import collections
import math

FLOOR = 0.004  # 4 ms per second of budget: timer lateness on a quiet loop
START = 0.05  # until LATENCY_SAMPLES round trips are seen
CEILING = 0.16  # beyond this the budget lost to spacing exceeds what a 429 costs
LATENCY_FACTOR = 0.7
LATENCY_SAMPLES = 20
WINDOW = 200  # round trips kept
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
            spread = self._sorted[(count * 98) // 100 - 1] - self._sorted[(count * 2) // 100]
            self._from_latency = max(self.floor, LATENCY_FACTOR * spread)

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

    def on_throttle(self, now: float, retry_after: float | None) -> bool:
        """A 429 arrived. Widen the margin if it can cure it; True means it cannot (a
        competitor, or the server cut the rate): the caller should lower the rate."""
        if retry_after is not None and retry_after > WINDOW_RETRY_AFTER:
            return True
        current = self.margin(now)
        if current >= self.ceiling:
            return True
        self._learned = min(self.ceiling, max(2 * current, current + 0.01))
        self._learned_at = now
        self.widenings += 1
        return False
