"""What one grant of :class:`~postman_async.ratelimit_redis.RedisRateLimiter`'s answer clock
is, and the shapes of its round trips: the slot Redis gave, what a driver asks, what Redis
replies. A :class:`RedisGrant` reports its request's fate to its process's clock
(:class:`postman_async._redis_answers.AnswerClockClient`), which sends it to Redis."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ._redis_answers import AnswerClockClient

#: what set a slot (see postman_async._redis_lua.ANSWERS)
WHY = ("now", "answer", "deadline", "spacing", "pause", "bulk promise")


class Slot(NamedTuple):
    """A slot the script reserved."""

    id: int
    #: when it is due on this process's clock (never earlier than on Redis's)
    due: float
    #: when it is due on Redis's clock (µs)
    at_us: int
    #: what set it: an index into :data:`WHY`
    why: int


class Ask(NamedTuple):
    """One round trip's request."""

    #: new slots wanted (0: none)
    want: int
    #: the new slots are BULK promises
    bulk: bool
    #: s: how long the longest-waiting caller has waited
    waited: float
    #: the promised ids to confirm
    confirm: list[int]
    #: the reports, as the script's arguments
    reports: list[Any]


class Reply(NamedTuple):
    #: 0: all wanted slots given; 1: an answer is awaited
    status: int
    #: s: status 1: the earliest the next slot could be, from now
    wait: float
    #: the promised ids confirmed (the others were taken over, or confirmed too late)
    confirmed: set[int]
    #: the new slots (promises, for a BULK ask)
    slots: list[Slot]


class RedisGrant:
    """One slot of the campaign's shared answer clock: report what became of the request
    (the :class:`~postman_async.ratelimit.Grant` protocol). Times are this process's clock."""

    __slots__ = ("_clock", "_done", "due", "id", "released_at", "slot", "written_at")

    def __init__(self, clock: AnswerClockClient, slot: Slot) -> None:
        self._clock = clock
        self._done = False
        #: the campaign's grant number (grants are numbered in the order of their slots)
        self.id = slot.id
        self.slot = slot
        #: when the slot is due, on this process's clock (never earlier than Redis's slot)
        self.due = slot.due
        self.written_at: float | None = None
        #: when the request passed the server's limiter at the latest, once known
        self.released_at: float | None = None

    @property
    def done(self) -> bool:
        return self._done

    @property
    def deadline(self) -> float:
        """When the request passed the server's limiter at the latest, as far as known."""
        if self.released_at is not None:
            return self.released_at
        start = self.written_at if self.written_at is not None else self.due
        return start + self._clock.cap

    def written(self) -> None:
        """The request's headers are being written now."""
        if not self._done and self.written_at is None:
            self.written_at = now = self._clock.now()
            self._clock.report("w", self.id, now)

    def answered(self) -> None:
        """An answer (any status) arrived now."""
        if self._done:
            return
        now = self._clock.now()
        if self.written_at is not None:
            self._clock.round_trip(now - self.written_at)
        start = self.written_at if self.written_at is not None else self.due
        self._settle(max(start, now - self._clock.credit))

    def lost(self) -> None:
        """The request may have been written, and no answer will come."""
        if self._done:
            return
        now = self._clock.now()
        start = self.written_at if self.written_at is not None else self.due
        self._clock.lost_answers += 1
        self._settle(min(now, start + self._clock.cap))

    def unsent(self) -> None:
        """The request was never written: it does not count against the budget."""
        if not self._done:
            self._done = True
            self._clock.given_back += 1
            self._clock.report("u", self.id, self._clock.now())
            self._clock.forget(self)

    def _settle(self, released: float) -> None:
        self._done = True
        self.released_at = released
        self._clock.report("f", self.id, released)
        self._clock.forget(self, released)
