"""Pacing by the server's answers: TCP's ack clock (Jacobson, 1988) applied to a request budget.
Pure: no I/O, no sleeping; time is given.

An answer to a request proves that the request already passed the server's rate limiter. So
if the ``(k + R)``-th request (``R`` = the requests allowed per window) is written no earlier
than one window after the ``k``-th request's answer arrived, then no window at the server holds
more than ``R`` of our requests, however the network delays them and however late a stalled
process writes what it was granted::

    write k ──leg in──> server counts k ──leg out──> answer k
                                                        │ + window
                                                        v
                                        write k+R ──leg in──> server counts k+R

``credit`` (off by default) would count part of the two legs' delay as certain: a share of
the smallest of the last 64 round trips, once 16 were seen with their write times. Off,
because no share of it is safe: the smallest *sum* of two legs seen can exceed the smallest
legs that later pair up (one call's fast way back, another's fast way in). With a quarter of
it, one of 40 seeds of the virtual-clock test's lost-answers case let 11 calls into one second
(uniform 2-42 ms legs); with none, none of 60 seeds of any case did. What it would buy is
small: a few ms per second of budget.

The one assumption: **a request reaches the server within** ``cap`` **of its write** (2 s by
default). A request that has no answer ``cap`` after its write (a timeout, a lost connection)
counts as having reached the server at write + ``cap``; one that was never written does not
count at all. A granted request not yet written holds its successors the same way, from its
grant.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable

#: s: the longest a written request is assumed to take to reach the server (see module doc)
CAP = 2.0
#: the share of the smallest round trip credited as the two legs' delay (see the module doc)
CREDIT_FRACTION = 0.0
#: round trips kept for the smallest one (about 6 s at 10/s), and needed before any credit
RTT_SAMPLES = 64
CREDIT_AFTER = 16


class Ticket:
    """One grant of the answer clock. The caller reports what became of its request:
    :meth:`written` as its headers go out, then exactly one of :meth:`answered` (any
    response, a 429 included), :meth:`lost` (no answer: a timeout, a reset) or
    :meth:`unsent` (it was never written). Later reports are ignored."""

    __slots__ = ("_counted", "_owner", "granted_at", "released_at", "written_at")

    def __init__(self, owner: AnswerClock, granted_at: float) -> None:
        self._owner = owner
        self._counted = True  # still among the grants that gate the next ones
        self.granted_at = granted_at
        self.written_at: float | None = None
        #: when the request passed the server's limiter, at the latest (None: not known yet)
        self.released_at: float | None = None

    @property
    def done(self) -> bool:
        """Whether the outcome was reported (or the ticket given back)."""
        return self.released_at is not None or not self._counted

    def written(self) -> None:
        """The request's headers are being written now."""
        if self.written_at is None and not self.done:
            self.written_at = self._owner.now()
            self._owner.changed()

    def answered(self) -> None:
        """An answer (any status) arrived now."""
        if not self.done:
            self._owner.settle(self, answered=True)

    def lost(self) -> None:
        """The request may have been written, and no answer will come."""
        if not self.done:
            self._owner.settle(self, answered=False)

    def unsent(self) -> None:
        """The request was never written: it does not count against the budget."""
        if not self.done:
            self._owner.give_back(self)

    def deadline(self, cap: float) -> float:
        """When the request passed the server's limiter, at the latest, as far as known."""
        if self.released_at is not None:
            return self.released_at
        return (self.written_at if self.written_at is not None else self.granted_at) + cap


class AnswerClock:
    """Which grant may be written when: the ``R``-th most recent counted grant's answer plus
    one window (less the credit) is the earliest the next grant may go. See the module doc."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float],
        window: float = 1.0,
        cap: float = CAP,
        credit_fraction: float = CREDIT_FRACTION,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if not (rate > 0 and window > 0 and cap >= 0 and 0 <= credit_fraction < 1):
            raise ValueError("need rate > 0, window > 0, cap >= 0, 0 <= credit_fraction < 1")
        self.rate = rate
        self.window = window
        self.cap = cap
        self.credit_fraction = credit_fraction
        self.now = clock
        self._on_change = on_change
        #: the counted grants, oldest first; at most ``depth`` kept
        self._recent: collections.deque[Ticket] = collections.deque()
        self._rtts: collections.deque[float] = collections.deque(maxlen=RTT_SAMPLES)
        self.lost_answers = 0

    @property
    def depth(self) -> int:
        """``R``: the grants one window may hold at the rate."""
        return max(1, math.floor(self.rate * self.window + 1e-9))

    @property
    def credit(self) -> float:
        """The two legs' delay taken as known: a share of the smallest round trip seen."""
        if len(self._rtts) < CREDIT_AFTER:
            return 0.0
        return self.credit_fraction * min(self._rtts)

    def ready_at(self) -> float:
        """The earliest time the next grant may be written (-inf: at once)."""
        depth = self.depth
        if len(self._recent) < depth:
            return -math.inf
        return self._recent[-depth].deadline(self.cap) + self.window

    def grant(self) -> Ticket:
        """Count a grant made now."""
        ticket = Ticket(self, self.now())
        self._recent.append(ticket)
        while len(self._recent) > self.depth:
            self._recent.popleft()._counted = False
        return ticket

    def settle(self, ticket: Ticket, *, answered: bool) -> None:
        now = self.now()
        start = ticket.written_at if ticket.written_at is not None else ticket.granted_at
        if answered:
            if ticket.written_at is not None:
                self._rtts.append(now - ticket.written_at)
            released = max(start, now - self.credit)  # the answer, when no credit
        else:
            self.lost_answers += 1
            released = min(now, start + self.cap)
        ticket.released_at = released
        self.changed()

    def give_back(self, ticket: Ticket) -> None:
        self._recent.remove(ticket)
        ticket._counted = False
        self.changed()

    def changed(self) -> None:
        if self._on_change is not None:
            self._on_change()
