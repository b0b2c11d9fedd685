"""How the session retries one HTTP call, and per-call options (``client.with_options``).

What a policy can change: how many times, how long to wait between tries, and whether a 429
is retried. What it cannot change are the POST-safety rules: a send or retry POST is re-sent
only when the server certainly dropped it (a 429, or a connection that failed before the
request was written); after an ambiguous failure it never is, whatever the policy says.
"""

from __future__ import annotations

import math

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


@attrs.frozen
class CallOptions:
    """Per-call overrides held by a ``with_options`` view (``None``: the client's own)."""

    timeout: float | None = None
    policy: RetryPolicy | None = None
    priority: Priority | None = None

    def merged(self, other: CallOptions) -> CallOptions:
        return CallOptions(
            timeout=other.timeout if other.timeout is not None else self.timeout,
            policy=other.policy if other.policy is not None else self.policy,
            priority=other.priority if other.priority is not None else self.priority,
        )
