"""Hooks a retry job puts around each POST attempt (see :mod:`postman_async.jobs.runner`):
one awaited after the token is granted (the durable intent), and a gate called at the last
moment before the request's bytes are written, with its connection in hand."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import attrs

from .ratelimit import Grant

#: Awaited after a POST's token is granted and before the POST is written (each attempt): a
#: retry job writes its durable intent here, and raising stops the POST from going out.
_before_post: contextvars.ContextVar[Callable[[], Awaitable[None]] | None] = contextvars.ContextVar(
    "postman_async_before_post", default=None
)


#: Called as a POST's headers are about to be written, after its connection was obtained:
#: raising stops the POST there (a retry job's "only within the window of the intent").
_post_gate: contextvars.ContextVar[Callable[[], None] | None] = contextvars.ContextVar(
    "postman_async_post_gate", default=None
)


@contextlib.contextmanager
def before_each_post(
    hook: Callable[[], Awaitable[None]], gate: Callable[[], None] | None = None
) -> Iterator[None]:
    """Await ``hook`` before every POST attempt made in this context (see ``_before_post``),
    and call ``gate`` at the last moment before each one is written (see ``_post_gate``;
    only on sessions this SDK creates, which carry the trace hook)."""
    token, gate_token = _before_post.set(hook), _post_gate.set(gate)
    try:
        yield
    finally:
        _post_gate.reset(gate_token)
        _before_post.reset(token)


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


def post_hook() -> Callable[[], Awaitable[None]] | None:
    """The hook in force for this context's POSTs, if any."""
    return _before_post.get()


def post_gate() -> Callable[[], None] | None:
    """The gate in force for this context's POSTs, if any."""
    return _post_gate.get()
