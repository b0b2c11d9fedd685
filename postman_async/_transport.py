"""Transport failures as typed errors: which are worth another try, and messages that name
the request, the server (host and port) and the cause, with any URL credential masked."""

from __future__ import annotations

import asyncio
import os
import socket

import aiohttp
from yarl import URL

from ._redact import redact_text
from .errors import (
    MalformedResponseError,
    PostmanConnectionError,
    PostmanError,
    PostmanTimeoutError,
    ServerError,
    TooManyRequestsError,
)
from .protocol import Request


def transient(error: PostmanError) -> bool:
    """Worth another try for an idempotent request: 429, 5xx, transport trouble."""
    return isinstance(
        error,
        (
            TooManyRequestsError,
            ServerError,
            PostmanConnectionError,
            PostmanTimeoutError,
            MalformedResponseError,
        ),
    )


def transport_error(cause: BaseException | None, request: Request, base_url: str) -> PostmanError:
    """A typed error that names the request, the server (host and port) and the cause."""
    where = f"{request.method} {request.path}"
    url = URL(base_url)
    server = f"{url.raw_host}:{url.port}"  # never the URL's credentials, if it had any
    if isinstance(cause, asyncio.TimeoutError):
        return PostmanTimeoutError(f"{where}: no answer from {server} in time (timed out)")
    if isinstance(cause, aiohttp.ClientConnectorDNSError):
        return PostmanConnectionError(
            f"{where}: cannot resolve host {url.raw_host}: {redact_text(_cause(cause))}"
        )
    return PostmanConnectionError(
        f"{where}: connection to {server} failed: {redact_text(_cause(cause))}"
    )


def _cause(cause: BaseException | None) -> str:
    if isinstance(cause, aiohttp.ClientConnectorError):
        error = cause.os_error
        if isinstance(error, socket.gaierror):  # the resolver's own text, not "Unknown error -2"
            reason = error.strerror or str(error)
        else:
            reason = os.strerror(error.errno) if error.errno else str(error)
        return f"{reason} ({type(cause).__name__})"
    if isinstance(cause, aiohttp.ServerDisconnectedError):
        return "the server closed the connection (ServerDisconnectedError)"
    if cause is None:
        return "unknown cause"
    text = str(cause)
    return f"{text} ({type(cause).__name__})" if text else type(cause).__name__
