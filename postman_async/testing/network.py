"""A network between the client and the simulator: a one-way delay per request, on the way in
(before the server's rate limiter sees the request) and again on the way out.

Real clients reach Postman across a network whose delay varies from request to request, so
calls that a client spaced evenly arrive unevenly. A base latency plus jitter, uniform or
heavy-tailed (lognormal), lets tests and benchmarks reproduce that on loopback.
"""

from __future__ import annotations

import math
import random

import attrs

DISTRIBUTIONS = ("uniform", "lognormal")
#: lognormal jitter: sigma of the underlying normal (a heavy tail: p99 ~ 10x the median) ...
LOGNORMAL_SIGMA = 1.0
#: ... and its cap, in multiples of ``jitter``, so one draw cannot stall a test
LOGNORMAL_CAP = 20.0


@attrs.frozen
class Network:
    """``latency`` (s) is the least one-way delay; ``jitter`` (s) the spread on top of it:
    uniform in [0, jitter], or lognormal with median ``jitter / 2`` and a heavy tail (capped
    at ``20 * jitter``)."""

    latency: float = 0.0
    jitter: float = 0.0
    distribution: str = "uniform"

    def __attrs_post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}")
        if not (self.latency >= 0 and self.jitter >= 0):
            raise ValueError("latency and jitter must be >= 0")

    @property
    def active(self) -> bool:
        return self.latency > 0 or self.jitter > 0

    def delay(self, rng: random.Random) -> float:
        """One one-way delay (s)."""
        if self.jitter <= 0:
            return self.latency
        if self.distribution == "uniform":
            extra = rng.uniform(0.0, self.jitter)
        else:
            median = self.jitter / 2
            extra = min(
                median * math.exp(rng.gauss(0.0, LOGNORMAL_SIGMA)), LOGNORMAL_CAP * self.jitter
            )
        return self.latency + extra
