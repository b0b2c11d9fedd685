"""Deliberately broken job workers: each mutation removes one rule of the journal, so the
job tests can show their checks failing without it.

    python -m tests.jobs.mutants MUTATION [worker args...]
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any


def no_reconcile() -> None:
    """A new holder re-POSTs a crashed holder's ID without reading it first."""
    from postman_async.jobs import runner
    from postman_async.jobs.reconcile import Verdict

    def post_again(*args: Any, **kwargs: Any) -> Verdict:
        return Verdict(None)

    runner.reconcile = post_again  # type: ignore[assignment]


def no_fencing() -> None:
    """Intents are written whoever holds the lease, and whether or not the ID is done."""
    from postman_async.jobs import _lua

    _lua.WRITE_INTENT = (
        _lua._NOW
        + """
local c = KEYS[1] .. ':c:' .. ARGV[1]
redis.call('HSET', c .. ':intent', ARGV[3], ARGV[2] .. '|' .. now .. '|' .. ARGV[4])
return now
"""
    )


def live_lease_only() -> None:
    """The intent script checks that the chunk's lease is live, not whose epoch it is."""
    from postman_async.jobs import _lua

    _lua.WRITE_INTENT = _lua.WRITE_INTENT.replace(
        "if e ~= tonumber(ARGV[2]) or u <= now then return -1 end",
        "if not e or u <= now then return -1 end",
    )
    assert "if not e or u <= now" in _lua.WRITE_INTENT


def no_window() -> None:
    """A POST goes out however long ago its intent was written."""
    from postman_async.jobs import runner

    runner._ChunkRun._within_window = lambda self, started: True  # type: ignore[method-assign]


def no_read_first() -> None:
    """A job submitted again after Redis lost it POSTs without reading each ID first."""
    from postman_async.jobs import runner

    async def post_at_once(self: Any, message_id: str, known: Any, since_ms: int) -> Any:
        return known

    runner._ChunkRun._read_first = post_at_once  # type: ignore[method-assign]


MUTATIONS: dict[str, Callable[[], None]] = {
    "no_reconcile": no_reconcile,
    "no_fencing": no_fencing,
    "no_window": no_window,
    "live_lease_only": live_lease_only,
    "no_read_first": no_read_first,
}

if __name__ == "__main__":
    MUTATIONS[sys.argv[1]]()
    from postman_async.jobs.worker import main

    sys.exit(main(sys.argv[2:]))
