"""How the session retries one HTTP call, and per-call options (``client.with_options``).

What a policy can change: how many times, how long to wait between tries, and whether a 429
is retried. What it cannot change are the POST-safety rules: a send or retry POST is re-sent
only when the server certainly dropped it (a 429, or a connection that failed before the
request was written); after an ambiguous failure it never is, whatever the policy says.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import attrs

from .errors import ValidationError
from .models import Priority


@attrs.frozen
class RetryPolicy:
    """The session's retries for one call (the POST-safety rules are not configurable).

    ``max_retries``: HTTP retries after the first attempt. ``backoff_base`` and
    ``backoff_cap`` (s): the wait before retry *n* is drawn from [0, min(cap, base * 2**(n-1))]
    with ``jitter`` ("full jitter"), or is exactly that ceiling without it. ``retry_on_429``:
    wait out a 429 (its ``Retry-After``, capped at ``max_retry_after`` s) and try again, or
    raise :class:`TooManyRequestsError` at once (the campaign's limiter still slows down).
    Raises :class:`ValidationError` for a value out of range."""

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_cap: float = 20.0
    jitter: bool = True
    retry_on_429: bool = True
    max_retry_after: float = 60.0

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool):
            raise ValidationError("max_retries", "must be an integer >= 0")
        if self.max_retries < 0:
            raise ValidationError("max_retries", "must be an integer >= 0")
        for name in ("backoff_base", "backoff_cap", "max_retry_after"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValidationError(name, "must be a finite number >= 0")

    def ceiling(self, attempt: int) -> float:
        """The longest wait before retry number ``attempt`` (1-based)."""
        return float(min(self.backoff_cap, self.backoff_base * 2 ** (attempt - 1)))


#: Awaited after a POST's token is granted and before the POST is written (each attempt).
PostHook = Callable[[], Awaitable[None]]


@attrs.define(eq=False)  # meters are told apart by identity, not by their counts
class CallMeter:
    """Counts the HTTP attempts (each spent a token) made through every view that carries
    it: ``view = client.with_options(meter=meter)``; views of that view count too."""

    calls: int = 0


@attrs.frozen
class CallOptions:
    """Per-call settings held by a ``with_options`` view (``None``: the client's own).

    ``meters``: counted on every attempt. ``before_post``: awaited after each POST attempt's
    token is granted, before the POST is written; raising stops the POST (a retry job writes
    its durable intent here). ``post_gate``: called at the last moment before a POST's headers
    are written, with its connection in hand; raising stops it there (only on sessions the SDK
    creates, which carry the trace hook)."""

    timeout: float | None = None
    policy: RetryPolicy | None = None
    priority: Priority | None = None
    meters: tuple[CallMeter, ...] = ()
    before_post: PostHook | None = None
    post_gate: Callable[[], None] | None = None

    def merged(self, other: CallOptions) -> CallOptions:
        """``other`` over this: its settings win where given; meters add up."""
        return CallOptions(
            timeout=other.timeout if other.timeout is not None else self.timeout,
            policy=other.policy if other.policy is not None else self.policy,
            priority=other.priority if other.priority is not None else self.priority,
            meters=self.meters + tuple(m for m in other.meters if m not in self.meters),
            before_post=other.before_post or self.before_post,
            post_gate=other.post_gate or self.post_gate,
        )
