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
#: s: TCP's minimum retransmission timeout (RFC 6298 allows 1 s; Linux uses 200 ms)
RETRANSMIT = 0.2


@attrs.frozen
class Network:
    """``latency`` (s) is the least one-way delay; ``jitter`` (s) the spread on top of it:
    uniform in [0, jitter], or lognormal with median ``jitter / 2`` and a heavy tail (capped
    at ``20 * jitter``)."""

    latency: float = 0.0
    jitter: float = 0.0
    distribution: str = "uniform"
    #: share of legs held back a further ``RETRANSMIT`` s (a lost segment resent)
    retransmit_share: float = 0.0

    def __attrs_post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution must be one of {DISTRIBUTIONS}")
        if not (self.latency >= 0 and self.jitter >= 0):
            raise ValueError("latency and jitter must be >= 0")
        if not 0 <= self.retransmit_share <= 1:
            raise ValueError("retransmit_share must be in [0, 1]")

    @property
    def active(self) -> bool:
        return self.latency > 0 or self.jitter > 0 or self.retransmit_share > 0

    def delay(self, rng: random.Random) -> float:
        """One one-way delay (s)."""
        if self.retransmit_share and rng.random() < self.retransmit_share:
            return RETRANSMIT + self._delay(rng)
        return self._delay(rng)

    def _delay(self, rng: random.Random) -> float:
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
