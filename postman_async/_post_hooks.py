"""What the session's aiohttp trace hook sees of a request: the gate a retry job set (see
``CallOptions.post_gate``) and the limiter's grant, told when the headers are written."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import attrs

from .ratelimit import Grant


@attrs.define
class RequestTrace:
    """One request's ``trace_request_ctx``: the gate to run at the last moment, the limiter's
    grant to tell of the write, and whether the headers went out."""

    gate: Callable[[], None] | None = None
    grant: Grant | None = None
    written: bool = False
    told: bool = False

    def tell(self, outcome: str) -> None:
        """Report the request's fate to the grant once: ``answered``, ``lost`` or
        ``unsent``."""
        if self.grant is not None and not self.told:
            self.told = True
            getattr(self.grant, outcome)()


async def _on_headers_sent(session: Any, context: Any, params: Any) -> None:
    """aiohttp's ``on_request_headers_sent``: runs just before the headers are written. A
    gate that raises stops the request there (so it was not written)."""
    trace = context.trace_request_ctx
    if not isinstance(trace, RequestTrace):
        return
    if trace.gate is not None:
        trace.gate()
    trace.written = True
    if trace.grant is not None:
        trace.grant.written()


def gate_trace() -> aiohttp.TraceConfig:
    """The aiohttp trace config that runs the gate and reports writes (on sessions this SDK
    creates)."""
    trace = aiohttp.TraceConfig()
    trace.on_request_headers_sent.append(_on_headers_sent)
    return trace
