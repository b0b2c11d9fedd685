"""A grant of :class:`~postman_async.ratelimit_redis.RedisRateLimiter`'s local fallback (Redis
unavailable): passed on to the fallback limiter's own grant, and followed by the Redis
limiter, so that going back to Redis keeps the campaign out of the windows it used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .ratelimit import Grant

if TYPE_CHECKING:
    from .ratelimit_redis import RedisRateLimiter


class FallbackGrant:
    """A grant of the local fallback limiter: passed on to its own grant (if any), and
    followed so that going back to Redis keeps the campaign out of the windows it used."""

    __slots__ = ("_inner", "_owner", "due", "released_at", "written_at")

    def __init__(self, owner: RedisRateLimiter, inner: Grant | None, due: float) -> None:
        self._owner = owner
        self._inner = inner
        self.due = due
        self.written_at: float | None = None
        self.released_at: float | None = None

    @property
    def deadline(self) -> float:
        if self.released_at is not None:
            return self.released_at
        start = self.written_at if self.written_at is not None else self.due
        return start + self._owner.cap

    def _settle(self, released: float | None) -> None:
        owner = self._owner
        owner._fallback_grants.discard(self)
        if released is not None:
            self.released_at = released
            owner._fallback_released = max(owner._fallback_released, released)

    def written(self) -> None:
        if self.written_at is None and self in self._owner._fallback_grants:
            self.written_at = self._owner._clock()
        if self._inner is not None:
            self._inner.written()

    def answered(self) -> None:
        if self in self._owner._fallback_grants:
            self._settle(self._owner._clock())
        if self._inner is not None:
            self._inner.answered()

    def lost(self) -> None:
        if self in self._owner._fallback_grants:
            start = self.written_at if self.written_at is not None else self.due
            self._settle(min(self._owner._clock(), start + self._owner.cap))
        if self._inner is not None:
            self._inner.lost()

    def unsent(self) -> None:
        if self in self._owner._fallback_grants:
            self._settle(None)
        if self._inner is not None:
            self._inner.unsent()
