"""What guards the example service: bearer tokens per caller, a request-body size limit and a
per-caller OTP rate limit shared by every replica (in Redis).

- :class:`Tokens`: caller name -> token, from ``POSTMAN_EXAMPLE_TOKENS="alice:<token>,bob:<token>"``
  or a file of ``name:token`` lines. Every presented token is compared with every configured
  one in constant time (``secrets.compare_digest``), so the timing tells nothing about which
  one, or how much of one, matched.
- :class:`BodySizeLimit`: an ASGI middleware; a body announced (``Content-Length``) or
  streamed (chunked) beyond the limit gets a 413, and the app sees none of it.
- :class:`OtpRateLimit`: a sliding window per caller in Redis, on Redis's clock.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import uuid
from collections.abc import Mapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: A caller's name: it becomes part of the Redis ids of the caller's jobs, so no dots.
CALLER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: RFC 6750's token characters; at least 16 of them (``secrets.token_urlsafe(32)`` gives 43).
TOKEN = re.compile(r"[A-Za-z0-9._~+/-]{16,512}=*")
#: A tokens file larger than this is refused unread.
MAX_TOKENS_FILE = 1 << 20


class ConfigError(RuntimeError):
    """The service is not configured well enough to start."""


class Tokens:
    """Caller name -> bearer token. ``caller(token)`` is the caller a token belongs to."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        if not tokens:
            raise ConfigError(
                "no bearer token configured: set POSTMAN_EXAMPLE_TOKENS='name:token,...' or "
                "POSTMAN_EXAMPLE_TOKENS_FILE (a token: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        for name, token in tokens.items():
            if not isinstance(name, str) or not CALLER_NAME.fullmatch(name):
                raise ConfigError(
                    f"bearer tokens: caller name {name!r:.70} may only hold letters, digits, "
                    "_ and - (at most 64)"
                )
            if not isinstance(token, str) or not TOKEN.fullmatch(token):
                raise ConfigError(
                    f"bearer tokens: the token of {name!r} must be at least 16 characters of "
                    "A-Z a-z 0-9 - . _ ~ + / (e.g. secrets.token_urlsafe(32))"
                )
        if len(set(tokens.values())) != len(tokens):
            raise ConfigError("bearer tokens: two callers have the same token")
        self._tokens = [(name, token.encode("ascii")) for name, token in tokens.items()]

    @property
    def callers(self) -> list[str]:
        return [name for name, _ in self._tokens]

    def caller(self, presented: str) -> str | None:
        """The caller whose token this is, or None. Compares against every token (never
        stops early), each in constant time."""
        candidate = presented.encode("latin-1", "replace")
        found = None
        for name, token in self._tokens:
            if secrets.compare_digest(candidate, token):
                found = name
        return found

    @classmethod
    def parse(cls, text: str, where: str) -> Tokens:
        """``name:token`` pairs separated by commas or newlines; blank and ``#`` lines are
        skipped. A name given twice is an error."""
        tokens: dict[str, str] = {}
        for n, raw in enumerate(re.split(r"[,\n]", text), 1):
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            name, sep, token = entry.partition(":")
            if not sep:
                raise ConfigError(f"{where}: entry {n} is not name:token")
            if name.strip() in tokens:
                raise ConfigError(f"{where}: caller {name.strip()!r:.70} is given twice")
            tokens[name.strip()] = token.strip()
        return cls(tokens)

    @classmethod
    def from_file(cls, path: str) -> Tokens:
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_TOKENS_FILE + 1)
        except OSError as exc:
            raise ConfigError(
                f"POSTMAN_EXAMPLE_TOKENS_FILE: cannot read {path!r}: {exc.strerror}"
            ) from exc
        if len(raw) > MAX_TOKENS_FILE:
            raise ConfigError(f"POSTMAN_EXAMPLE_TOKENS_FILE: {path!r} is larger than 1 MB")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"POSTMAN_EXAMPLE_TOKENS_FILE: {path!r} is not UTF-8") from exc
        return cls.parse(text, f"POSTMAN_EXAMPLE_TOKENS_FILE ({path})")


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


class BodySizeLimit:
    """Refuse request bodies larger than ``max_bytes`` with a 413: at once when the
    ``Content-Length`` says so, else while counting a streamed (chunked) body. The app gets
    the body only once all of it has arrived within the limit (it is at most ``max_bytes``)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lengths = [v for k, v in scope["headers"] if k.lower() == b"content-length"]
        if lengths:
            if len(set(lengths)) != 1 or not lengths[0].isdigit():
                await _answer(send, 400, "invalid Content-Length")
                return
            if int(lengths[0]) > self.max_bytes:
                await self._too_large(receive, send, more_body=True)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away: nobody to answer
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._too_large(receive, send, message.get("more_body", False))
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        pending: Message | None = {"type": "http.request", "body": b"".join(chunks)}

        async def replay() -> Message:
            nonlocal pending
            if pending is not None:
                message, pending = pending, None
                return message
            return await receive()  # after the body: the disconnect, for streamed answers

        await self.app(scope, replay, send)

    async def _too_large(self, receive: Receive, send: Send, more_body: bool) -> None:
        # Read and drop at most ``max_bytes`` more of it (kept nowhere) before answering, so
        # that a client still sending a little too much reads the 413 instead of a connection
        # reset; a larger body is cut off by the close that follows the answer.
        budget = self.max_bytes
        while more_body and budget > 0:
            message = await receive()
            if message["type"] != "http.request":
                return
            budget -= len(message.get("body", b""))
            more_body = message.get("more_body", False)
        await _answer(send, 413, f"request body larger than {self.max_bytes} bytes")


async def _answer(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    # The rest of the body is never read: the server closes the connection after this.
    headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


#: KEYS[1]: the caller's window (a sorted set of Redis-clock milliseconds); ARGV: window in
#: ms, limit, a unique member. Returns -1 when allowed (and counts it), else the milliseconds
#: until the oldest counted request leaves the window.
_SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return -1
"""


class OtpRateLimit:
    """At most ``limit`` OTPs per caller in any ``window`` seconds, counted in Redis (so every
    replica shares the count), on Redis's clock."""

    def __init__(self, redis: Any, campaign_id: str, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window_ms = int(window * 1000)
        self.prefix = f"postman_async:example:otp:{campaign_id}"
        self._script = redis.register_script(_SLIDING_WINDOW)

    async def retry_after(self, caller: str) -> int | None:
        """None, and the request is counted; or the seconds to wait (at least 1)."""
        wait_ms = int(
            await self._script(
                keys=[f"{self.prefix}:{caller}"],
                args=[self.window_ms, self.limit, uuid.uuid4().hex],
            )
        )
        return None if wait_ms < 0 else max(1, math.ceil(wait_ms / 1000))
