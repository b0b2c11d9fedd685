"""A fake network and server for RedisRateLimiter tests, and the checks of the answer clock's
guarantee on what was recorded (never on wall-clock rates).

Each limiter instance (its own Redis client) stands for a process. A caller acquires a grant,
may stall before writing (a stopped or busy process), writes (``grant.written()``), and its
request reaches the fake server one random leg later; then either its answer comes back a
random leg after that (``grant.answered()``, sometimes reported late: the process stalls
after the answer arrived), or no answer comes and ``grant.lost()`` is reported after a
timeout, or it is never written at all (``grant.unsent()``: a gate refused it).
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
from collections.abc import Sequence

import attrs

from postman_async import Priority
from postman_async.ratelimit_redis import RedisGrant, RedisRateLimiter
from postman_async.testing.server_limits import max_in_window

WINDOW = 1.0


@attrs.define
class Record:
    """One written request, as the test saw it (times on ``time.monotonic``)."""

    grant_id: int
    process: int
    written: float
    #: when the fake server counted it (written + the way in)
    arrived: float
    #: when it passed the server's limiter at the latest, as its process could know: when
    #: its answer was taken in, or (lost) when the loss was reported, at most written + cap
    released: float = float("inf")


@attrs.define
class Network:
    """Random legs and misfortunes; shares are per request."""

    rng: random.Random
    leg: tuple[float, float] = (0.0, 0.006)  # s, each way
    stall_share: float = 0.2  # stalled between grant and write ...
    stall: tuple[float, float] = (0.02, 0.3)  # ... this long
    lost_share: float = 0.03  # no answer: lost() after a timeout ...
    timeout: tuple[float, float] = (0.02, 0.2)  # ... this long after the write
    late_report_share: float = 0.03  # the answer is taken in late ...
    late_report: tuple[float, float] = (0.05, 0.3)  # ... by this much
    unsent_share: float = 0.02  # never written
    cap: float = 2.0
    records: list[Record] = attrs.field(factory=list)
    unsent: int = 0

    async def request(self, process: int, grant: RedisGrant) -> None:
        rng = self.rng
        if rng.random() < self.unsent_share:
            await asyncio.sleep(0)
            grant.unsent()
            self.unsent += 1
            return
        if rng.random() < self.stall_share:
            await asyncio.sleep(rng.uniform(*self.stall))
        written = time.monotonic()
        grant.written()
        leg_in = rng.uniform(*self.leg)
        record = Record(grant.id, process, written, written + leg_in)
        self.records.append(record)
        if rng.random() < self.lost_share:
            await asyncio.sleep(rng.uniform(*self.timeout))
            record.released = min(time.monotonic(), written + self.cap)
            grant.lost()
            return
        await asyncio.sleep(leg_in + rng.uniform(*self.leg))
        if rng.random() < self.late_report_share:
            await asyncio.sleep(rng.uniform(*self.late_report))
        record.released = time.monotonic()
        grant.answered()


async def drive(
    limiters: Sequence[RedisRateLimiter],
    network: Network,
    *,
    grants: int,
    callers: int = 100,
    lanes: Sequence[Priority] = (Priority.HIGH, Priority.BULK),
    cancel_share: float = 0.0,
) -> int:
    """``callers`` callers per limiter (lanes assigned in turn) make ``grants`` acquires
    between them; ``cancel_share`` of them give up while waiting. Returns how many did."""
    taken = cancelled = 0
    rng = network.rng

    async def caller(process: int, limiter: RedisRateLimiter, lane: Priority) -> None:
        nonlocal taken, cancelled
        while taken < grants:
            taken += 1
            patience = rng.uniform(0.0, 0.05) if rng.random() < cancel_share else None
            try:
                grant = await asyncio.wait_for(limiter.acquire(lane), patience)
            except asyncio.TimeoutError:
                cancelled += 1
                continue
            assert isinstance(grant, RedisGrant)
            await network.request(process, grant)

    await asyncio.gather(
        *(
            caller(process, limiter, lanes[index % len(lanes)])
            for process, limiter in enumerate(limiters)
            for index in range(callers)
        )
    )
    return cancelled


def violations(records: Sequence[Record], rate: float, *, credit: float = 0.0) -> list[str]:
    """What breaks the answer clock's guarantee in ``records`` (empty: nothing):

    - the server: more than ``R`` arrivals in a sliding window;
    - the writes: ``R + 1`` writes within ``window - credit``;
    - the answer clock itself: a write with ``R`` earlier grants (in grant order) not yet
      released a window before it: its ``R``-th predecessor's answer was not waited for.
    """
    depth = max(1, int(rate * WINDOW + 1e-9))
    found = []
    arrivals = sorted(r.arrived for r in records)
    if (most := max_in_window(arrivals)) > depth:
        found.append(f"the server saw {most} requests in a sliding second (rate {depth})")
    writes = sorted(r.written for r in records)
    squeezed = [
        (writes[i], writes[i + depth])
        for i in range(len(writes) - depth)
        if writes[i + depth] - writes[i] < WINDOW - credit - 1e-6
    ]
    if squeezed:
        first, last = squeezed[0]
        found.append(
            f"{len(squeezed)} runs of {depth + 1} writes within {WINDOW - credit:g} s, "
            f"e.g. {last - first:.3f} s"
        )
    released: list[float] = []  # of the earlier grants, sorted
    early = 0
    for record in sorted(records, key=lambda r: r.grant_id):
        live = len(released) - bisect.bisect_right(released, record.written - WINDOW)
        early += live >= depth
        bisect.insort(released, record.released)
    if early:
        found.append(f"{early} writes came before their R-th predecessor's answer + 1 s")
    return found
