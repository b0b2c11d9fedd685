"""The session layer: the one place where HTTP attempts are made and HTTP-level retries happen.

Per attempt: take a token from the campaign's limiter -> send with aiohttp -> read a body capped
at its decoded size -> decide: done, raise a typed error, or retry after a delay. Re-sending rules:

- GET: retried on 429, 5xx, timeouts and connection errors (it changes nothing).
- POST (send, retry): re-sent only when the server certainly dropped it: a 429, or a connection
  that failed before the request was written. Any other failure (timeout, reset after writing,
  5xx) raises :class:`OutcomeUnknownError`: a re-send could deliver a second SMS.
- Every retry withdraws from the campaign's retry budget, so an outage does not multiply traffic.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import attrs
from multidict import CIMultiDictProxy
from yarl import URL

from . import telemetry
from ._body import ACCEPT_ENCODING, BoundedDecoder, UndecodableError
from ._post_hooks import RequestTrace, gate_trace
from ._transport import transient, transport_error
from ._version import __version__
from .errors import (
    APIError,
    MalformedResponseError,
    OutcomeUnknownError,
    PostmanConnectionError,
    PostmanError,
    RetryBudgetExhaustedError,
    TooManyRequestsError,
)
from .models import Priority
from .policy import CallOptions, RetryPolicy
from .protocol import Request, error_from_response
from .ratelimit import Clock, Grant, Limiter, Sleep

logger = logging.getLogger("postman_async")

DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
DEFAULT_POLICY = RetryPolicy()
NO_OPTIONS = CallOptions()


@attrs.frozen
class RawResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    attempts: int
    value: Any = None  # what ``decode`` made of the body


class RetryBudget:
    """A campaign's allowance of HTTP retries (after botocore's retry quota): each retry
    withdraws, each success deposits a little back. Empty means an outage: stop retrying."""

    def __init__(self, capacity: int = 100, retry_cost: int = 5, success_refund: int = 1) -> None:
        self.capacity = capacity
        self.retry_cost = retry_cost
        self.success_refund = success_refund
        self.available = capacity

    def withdraw(self) -> bool:
        if self.available < self.retry_cost:
            return False
        self.available -= self.retry_cost
        return True

    def deposit(self) -> None:
        self.available = min(self.capacity, self.available + self.success_refund)


_budgets: dict[str, RetryBudget] = {}


def shared_retry_budget(key: str) -> RetryBudget:
    """The process-wide retry budget of a campaign."""
    budget = _budgets.get(key)
    if budget is None:
        budget = _budgets[key] = RetryBudget()
    return budget


def may_resend(
    request: Request, error: PostmanError, certainly_dropped: bool, policy: RetryPolicy
) -> bool:
    """The re-send rule, in one place. A POST (send, retry) is re-sent only when the server
    certainly dropped it: a 429, or a connection that failed before the request was written.
    A GET is also re-sent after a transient failure (5xx, timeout, reset): it changes nothing.
    A policy that does not retry 429s re-sends nothing after one."""
    if isinstance(error, TooManyRequestsError) and not policy.retry_on_429:
        return False
    return certainly_dropped or (request.is_idempotent and transient(error))


class _NotSent(Exception):
    """The connection failed before the request was written: safe to re-send."""


class _MaybeSent(Exception):
    """The request may have reached the server."""


def _log_fields(request: Request, attempt: int, limiter_wait: float) -> dict[str, Any]:
    """An attempt's structured log fields (``record.postman``): IDs from the path, never a
    recipient, body or key."""
    return {
        "campaign": telemetry.campaign_of(request.path),
        "message_id": telemetry.message_of(request.path),
        "endpoint": request.path,
        "method": request.method,
        "attempt": attempt,
        "limiter_wait_ms": round(limiter_wait * 1000, 1),
    }


class HttpSession:
    """Sends :class:`Request` objects for one campaign key. Owns the aiohttp session it creates
    (lazily, inside the running loop); never closes a session it was given."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: URL,
        limiter: Limiter,
        retry_budget: RetryBudget,
        timeout: float,
        policy: RetryPolicy = DEFAULT_POLICY,
        session: aiohttp.ClientSession | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._base_url = str(base_url).rstrip("/")
        self.limiter = limiter
        # Optional in the Limiter protocol: a limiter of one's own need not learn.
        self._observe: Callable[[float], None] | None = getattr(limiter, "observe", None)
        self.retry_budget = retry_budget
        self.timeout = timeout
        self.policy = policy
        self._session = session
        self._owns_session = session is None
        self.max_response_bytes = max_response_bytes
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._closed = False
        self.calls = 0  # HTTP attempts made (tokens spent)
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Accept": "application/json",
            "Accept-Encoding": ACCEPT_ENCODING,  # only what _body can decode under the cap
            "User-Agent": f"postman-async/{__version__}",
        }
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    def __repr__(self) -> str:
        return f"<HttpSession {self._base_url}>"

    def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            raise PostmanError("the client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100),
                timeout=self._timeout,
                trace_configs=[gate_trace()],
            )
        return self._session

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            await session.close()

    def backoff(self, attempt: int, policy: RetryPolicy | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**(attempt-1))) (or that ceiling)."""
        policy = policy or self.policy
        ceiling = policy.ceiling(attempt)
        return self._rng.uniform(0, ceiling) if policy.jitter else ceiling

    async def send(
        self,
        request: Request,
        *,
        priority: Priority = Priority.HIGH,
        decode: Callable[[bytes], Any] | None = None,
        options: CallOptions | None = None,
    ) -> RawResponse:
        """Send with the retry rules above. ``decode`` turns a 2xx body into ``value``; for a
        GET, a body it cannot decode (truncated, garbled) is retried like a 5xx. ``options``:
        this call's timeout and retry policy, when not the session's. One span per call."""
        attempts = [0]
        with telemetry.call_span(request.method, request.path) as span:
            try:
                raw = await self._send(request, priority, decode, options, attempts)
            except BaseException as exc:
                status = exc.status if isinstance(exc, APIError) else None
                telemetry.end_call(span, status=status, attempts=attempts[0], error=exc)
                raise
            telemetry.end_call(span, status=raw.status, attempts=raw.attempts, error=None)
            return raw

    async def _send(
        self,
        request: Request,
        priority: Priority,
        decode: Callable[[bytes], Any] | None,
        options: CallOptions | None,
        attempts: list[int],
    ) -> RawResponse:
        options = options or NO_OPTIONS
        policy = options.policy or self.policy
        lane = {"postman.lane": priority.name.lower()}
        attempt = 0
        while True:
            attempt = attempts[0] = attempt + 1
            waited = self._clock()
            grant = await self.limiter.acquire(priority)
            try:
                if not request.is_idempotent and options.before_post is not None:
                    await options.before_post()
            except BaseException:
                if grant is not None:
                    grant.unsent()
                raise
            started = self._clock()
            telemetry.add("wait", (started - waited) * 1000, **lane)
            self.calls += 1
            for meter in options.meters:
                meter.calls += 1
            outcome = await self._attempt(
                request, attempt, (waited, started), decode, (options, grant)
            )
            if isinstance(outcome, RawResponse):
                self.retry_budget.deposit()
                return outcome
            error, certainly_dropped = outcome
            retryable = may_resend(request, error, certainly_dropped, policy)
            if isinstance(error, TooManyRequestsError) and not policy.retry_on_429:
                await self.limiter.penalize(
                    min(error.retry_after or 1.0, policy.max_retry_after),
                    retry_after=error.retry_after,
                )
            if not retryable or attempt > policy.max_retries:
                raise self._final(request, error, certainly_dropped, started)
            await self._wait_to_retry(request, error, attempt, policy)

    async def _attempt(
        self,
        request: Request,
        attempt: int,
        times: tuple[float, float],
        decode: Callable[[bytes], Any] | None,
        how: tuple[CallOptions, Grant | None] = (NO_OPTIONS, None),
    ) -> RawResponse | tuple[PostmanError, bool]:
        """One HTTP attempt: the response, or (the error, whether the server certainly
        dropped the request). ``times``: when the token was asked for, and granted; ``how``:
        this call's options, and the limiter's grant to report the request's fate to."""
        waited, started = times
        fields = _log_fields(request, attempt, started - waited)
        try:
            status, headers, body = await self._perform(request, *how)
        except (_NotSent, _MaybeSent) as exc:
            error = transport_error(exc.__cause__, request, self._base_url)
            fields.update(status=None, error=type(error).__name__)
            logger.debug(
                "%s %s -> %s",
                request.method,
                request.path,
                fields["error"],
                extra={"postman": fields},
            )
            return error, isinstance(exc, _NotSent)
        latency = self._clock() - started
        if self._observe is not None:  # the round trips' spread teaches the limiter's margin
            self._observe(latency)
        fields.update(status=status, latency_ms=round(latency * 1000, 1))
        failed = None
        if not 200 <= status < 300:
            readable = body if isinstance(body, bytes) else b""
            failed = error_from_response(
                status, headers, readable, method=request.method, path=request.path
            )
            fields["error_id"] = getattr(failed, "error_id", None)
        logger.debug("%s %s -> %d", request.method, request.path, status, extra={"postman": fields})
        if failed is not None:
            if status == 429:
                telemetry.add("throttled", 1, **{"postman.endpoint": telemetry.route(request.path)})
            return failed, status == 429
        try:
            if isinstance(body, MalformedResponseError):  # its Content-Encoding did not undo
                raise body
            value = decode(body) if decode is not None else None
        except MalformedResponseError as exc:
            if not request.is_idempotent:
                raise
            return exc, False
        return RawResponse(status, headers, body, attempt, value)

    async def _wait_to_retry(
        self, request: Request, error: PostmanError, attempt: int, policy: RetryPolicy
    ) -> None:
        """Withdraw from the retry budget, then wait: a 429 pauses the campaign's limiter
        (``Retry-After`` when given), anything else backs off with full jitter."""
        if not self.retry_budget.withdraw():
            raise RetryBudgetExhaustedError(
                f"retry budget exhausted; last error: {error}", cause=error
            ) from error
        telemetry.add("withdrawals")
        where = (request.method, request.path)
        fields = {"endpoint": request.path, "method": request.method, "attempt": attempt}
        if isinstance(error, TooManyRequestsError):
            delay = error.retry_after
            delay = (
                self.backoff(attempt, policy)
                if delay is None
                else min(delay, policy.max_retry_after)
            )
            logger.info(
                "%s %s throttled (429), retrying in %.2fs (attempt %d)",
                *where,
                delay,
                attempt,
                extra={"postman": {**fields, "status": 429, "delay_s": round(delay, 3)}},
            )
            await self.limiter.penalize(delay, retry_after=error.retry_after)
        else:
            delay = self.backoff(attempt, policy)
            logger.info(
                "%s %s failed (%s), retrying in %.2fs (attempt %d)",
                *where,
                error,
                delay,
                attempt,
                extra={
                    "postman": {**fields, "error": type(error).__name__, "delay_s": round(delay, 3)}
                },
            )
            await self._sleep(delay)

    @staticmethod
    def _final(
        request: Request, error: PostmanError, dropped: bool, sent_at: float
    ) -> PostmanError:
        if request.is_idempotent or dropped or (isinstance(error, APIError) and error.status < 500):
            return error
        telemetry.add("unknown", 1, **{"postman.endpoint": telemetry.route(request.path)})
        return OutcomeUnknownError(
            f"{request.method} {request.path}: outcome unknown after {error}; "
            "it was not re-sent (no idempotency key: a re-send could deliver twice)",
            cause=error,
            sent_at=sent_at,
        )

    def now(self) -> float:
        """The session clock (the one ``sent_at`` uses)."""
        return self._clock()

    async def _perform(
        self, request: Request, options: CallOptions = NO_OPTIONS, grant: Grant | None = None
    ) -> tuple[int, CIMultiDictProxy[str], bytes | MalformedResponseError]:
        """Status, headers and the decoded body (or why it would not decode). Tells ``grant``
        when the request is written and whether an answer came (see :class:`Grant`)."""
        trace = RequestTrace(
            gate=options.post_gate if not request.is_idempotent else None, grant=grant
        )
        try:
            return await self._exchange(request, options.timeout, trace)
        finally:
            # Unless told already, no answer came. Without our trace hook (a session passed
            # in) a write cannot be ruled out.
            trace.tell("lost" if trace.written or not self._owns_session else "unsent")

    async def _exchange(
        self, request: Request, timeout: float | None, trace: RequestTrace
    ) -> tuple[int, CIMultiDictProxy[str], bytes | MalformedResponseError]:
        http = self._http()
        kwargs: dict[str, Any] = {
            "headers": self._headers,
            # Decoded by _body under the cap, never by aiohttp (on a session passed in too).
            "auto_decompress": False,
            "params": list(request.params) or None,
            "allow_redirects": False,
            "timeout": self._timeout if timeout is None else aiohttp.ClientTimeout(total=timeout),
        }
        kwargs["trace_request_ctx"] = trace
        if request.json_body is not None:
            kwargs["json"] = request.json_body
        elif request.csv_file is not None:
            form = aiohttp.FormData()
            form.add_field(
                "file", request.csv_file, filename=request.filename, content_type="text/csv"
            )
            kwargs["data"] = form
        url = URL(self._base_url + request.path, encoded=True)
        try:
            async with http.request(request.method, url, **kwargs) as response:
                trace.tell("answered")
                body = await self._read_capped(response)
                return response.status, response.headers, body
        except (aiohttp.ClientSSLError, aiohttp.ClientConnectorCertificateError) as exc:
            # Not transient: a certificate problem will not fix itself on a re-send.
            raise PostmanConnectionError(
                f"{request.method} {request.path}: TLS failure ({type(exc).__name__})"
            ) from exc
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            trace.tell("unsent")
            raise _NotSent() from exc
        except (asyncio.TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _MaybeSent() from exc

    async def _read_capped(
        self, response: aiohttp.ClientResponse
    ) -> bytes | MalformedResponseError:
        """Read in chunks, decoding as they come: past ``max_response_bytes`` DECODED bytes
        it raises, whatever ``Content-Length`` said and however well the body compressed."""
        encoding = response.headers.get("Content-Encoding")
        try:
            decoder = BoundedDecoder(encoding, self.max_response_bytes)
            declared = response.content_length
            if declared is not None and declared > decoder.max_input:
                raise MalformedResponseError(f"response of {declared} bytes refused")
            async for chunk in response.content.iter_chunked(65536):
                decoder.feed(chunk)
            return decoder.finish()
        except UndecodableError as exc:
            return MalformedResponseError(f"response body refused: {exc}")
