"""PostmanClient: one campaign and its API key; one typed method per endpoint."""

from __future__ import annotations

import asyncio
import copy
import functools
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import attrs

from . import _batch_upload, _retry_readback, _send_readback, telemetry
from ._batch_upload import max_batch_rows_for
from ._csv_input import CsvSource
from ._session import DEFAULT_MAX_RESPONSE_BYTES, HttpSession, RawResponse, shared_retry_budget
from .converter import decode
from .errors import PostmanError, ValidationError
from .listing import MessagePages
from .models import BatchSendResult, Message, MessageStatus, Page, Priority
from .policy import CallMeter, CallOptions, PostHook, RetryPolicy
from .protocol import (
    Request,
    decode_body,
    get_message_request,
    list_batch_messages_request,
    list_messages_request,
    retry_batch_request,
    send_message_request,
)
from .ratelimit import Clock, Limiter, Sleep, shared_limiter
from .rules import AttemptCap
from .validation import validate_api_key, validate_base_url, validate_id

logger = logging.getLogger("postman_async")
T = TypeVar("T")

PRODUCTION_URL = "https://postman.gov.sg/api/v2"
TEST_URL = "https://test.postman.gov.sg/api/v2"


def default_base_url(api_key: str) -> str:
    """The environment a key belongs to: ``key_test_`` -> test, anything else -> production
    (the same rule as OGP's own Postman client)."""
    return TEST_URL if api_key.startswith("key_test_") else PRODUCTION_URL


class PostmanClient:
    """Async client for one Postman v2 campaign.

    Use ``async with PostmanClient(api_key=..., campaign_id=...) as client:``. Every HTTP attempt
    takes a token from the campaign's limiter (shared by every client of the campaign in this
    process); see the README for the retry and no-double-send rules.
    """

    def __init__(
        self,
        api_key: str,
        campaign_id: str,
        *,
        base_url: str | None = None,
        rate_limit: float | None = None,
        timeout: float = 30.0,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        limiter: Limiter | None = None,
        priority: Priority = Priority.HIGH,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        resend_if_not_found: bool = False,
        readback_waits: Sequence[float] = _send_readback.DEFAULT_WAITS,
        environment: str | None = None,
        max_batch_rows: int | None = None,
    ) -> None:
        from .environments import environment_for

        key = validate_api_key(api_key)
        self.campaign_id = validate_id("campaign_id", campaign_id)
        #: The environment (``environment=`` "production", "test" or "loadtest"; else from
        #: the key's prefix). Its base URL and rate are the defaults; see
        #: :mod:`postman_async.environments`.
        self.environment = environment_for(environment, key)
        url = self.environment.base_url if environment else default_base_url(key)
        self._base_url = validate_base_url(base_url or url)
        self.base_url = str(self._base_url)
        #: The most rows one batch file holds; a larger ``send_batch`` is split into several
        #: batches (``None``: no limit but the API's 40 MB per file).
        self.max_batch_rows = max_batch_rows_for(max_batch_rows, key, self.base_url, environment)
        rate_limit = self.environment.rate_limit if rate_limit is None else rate_limit
        if not rate_limit > 0:
            raise ValidationError("rate_limit", "must be > 0")
        if not 0 < timeout < math.inf:
            raise ValidationError("timeout", "must be a finite number > 0")
        if max_retries is not None and retry_policy is not None:
            raise ValidationError("max_retries", "give it in the retry_policy instead")
        policy = retry_policy or RetryPolicy(max_retries=5 if max_retries is None else max_retries)
        self.rate_limit = float(rate_limit)
        self.priority = priority
        self._limiter = limiter
        self._campaign_key = f"{self.base_url}#{self.campaign_id}"
        self._session_args: dict[str, Any] = {
            "api_key": key,
            "timeout": float(timeout),
            "policy": policy,
            "session": session,
            "max_response_bytes": max_response_bytes,
            "clock": clock,
            "sleep": sleep,
            "rng": rng,
        }
        self._http: HttpSession | None = None
        self._closed = False
        #: the client whose session, limiter and budget a ``with_options`` view shares
        self._root = self
        self._options = CallOptions()
        #: What this client has learned of the server's attempt cap (shared by every
        #: orchestrator over this client).
        self.attempt_cap = AttemptCap()
        #: The IDs it created or returned, and how a lost send is read back (shared by views).
        self._readback = _send_readback.ReadbackState.of(sleep, readback_waits, resend_if_not_found)

    def __repr__(self) -> str:
        return f"PostmanClient(campaign_id={self.campaign_id!r}, base_url={self.base_url!r})"

    async def __aenter__(self) -> PostmanClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the aiohttp session if this client created it (a ``with_options`` view
        closes nothing: its root client owns the session)."""
        if self._root is not self:
            return
        self._closed = True
        if self._http is not None:
            await self._http.aclose()

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        retry_policy: RetryPolicy | None = None,
        priority: Priority | None = None,
        meter: CallMeter | None = None,
        before_post: PostHook | None = None,
        post_gate: Callable[[], None] | None = None,
    ) -> PostmanClient:
        """A view of this client with other per-call settings: the same session, limiter,
        retry budget and learned attempt cap, so an OTP can fail fast in the HIGH lane while
        a bulk job on the same client waits longer. ``max_retries`` replaces only that field
        of the policy. ``meter`` counts the view's HTTP attempts; ``before_post`` and
        ``post_gate`` run around each POST (see :class:`CallOptions`). Raises
        :class:`ValidationError` for a value out of range.

        ``otp = client.with_options(timeout=2, max_retries=0, priority=Priority.HIGH)``"""
        if timeout is not None and not (
            isinstance(timeout, (int, float)) and 0 < timeout < math.inf
        ):
            raise ValidationError("timeout", "must be a finite number > 0")
        policy = retry_policy
        if max_retries is not None:
            base = policy or self._options.policy or self._root._session_args["policy"]
            policy = attrs.evolve(base, max_retries=max_retries)
        view = copy.copy(self)
        view._options = self._options.merged(
            CallOptions(
                timeout=timeout,
                policy=policy,
                priority=priority,
                meters=(meter,) if meter is not None else (),
                before_post=before_post,
                post_gate=post_gate,
            )
        )
        if priority is not None:
            view.priority = priority
        return view

    @property
    def call_options(self) -> CallOptions:
        """The per-call settings of this view (``with_options``)."""
        return self._options

    @property
    def limiter(self) -> Limiter:
        """The campaign's limiter (created on first use, inside the running loop)."""
        return self._session().limiter

    @property
    def calls(self) -> int:
        """HTTP attempts made through this client and its views (each spent a token)."""
        root = self._root
        return root._http.calls if root._http else 0

    def _session(self) -> HttpSession:
        if self._root is not self:
            return self._root._session()
        if self._closed:
            raise PostmanError("the client is closed")
        if self._http is None:
            limiter = self._limiter or shared_limiter(self._campaign_key, self.rate_limit)
            telemetry.watch_limiter(limiter)
            self._http = HttpSession(
                base_url=self._base_url,
                limiter=limiter,
                retry_budget=shared_retry_budget(self._campaign_key),
                **self._session_args,
            )
        return self._http

    async def _send(
        self,
        request: Request,
        priority: Priority | None,
        decoder: Callable[[bytes], Any] | None = None,
    ) -> RawResponse:
        return await self._session().send(
            request, priority=priority or self.priority, decode=decoder, options=self._options
        )

    async def _call(
        self, request: Request, priority: Priority | None, model: type[T] | None = None
    ) -> Any:
        """Send ``request``; the body decoded (into ``model`` when given). For a GET, a body
        that does not decode is retried by the session, like a 5xx."""

        def decoder(body: bytes) -> Any:
            data = decode_body(body)
            return decode(model, data) if model is not None else data

        raw = await self._send(request, priority, decoder)
        return raw.value

    # -- endpoints -------------------------------------------------------------------------

    async def send_message(
        self,
        recipient: str,
        language: str,
        values: Mapping[str, str],
        *,
        priority: Priority | None = None,
        resend_if_not_found: bool | None = None,
    ) -> Message:
        """Send one SMS (``POST /campaigns/{id}/messages``); returns the created message.

        Never re-sent blindly: a lost or unreadable answer is read back, and the message found
        is returned with ``confirmed_by_readback=True``; else :class:`NotSentError`,
        :class:`AmbiguousSendError` or :class:`OutcomeUnknownError` says what was found.
        ``resend_if_not_found`` (default: the client's, off): one re-send after NotSentError.
        """
        request = send_message_request(self.campaign_id, recipient, language, values)
        resend = resend_if_not_found
        return await _send_readback.send_message(self, request, priority, resend=resend)

    async def get_message(self, message_id: str, *, priority: Priority | None = None) -> Message:
        """Read one message, with its attempts, template body and batches."""
        request = get_message_request(self.campaign_id, message_id)
        result: Message = await self._call(request, priority, Message)
        return result

    async def get_message_dated(
        self, message_id: str, *, priority: Priority | None = None
    ) -> tuple[Message, str | None]:
        """:meth:`get_message`, with the server's ``Date`` header: what deciding a lost retry
        by time needs (the jobs' reconcile uses it)."""
        raw = await self._send(
            get_message_request(self.campaign_id, message_id),
            priority,
            lambda body: decode(Message, decode_body(body)),
        )
        return raw.value, raw.headers.get("Date")

    async def retry_message(
        self,
        message_id: str,
        *,
        attempts_before: int | None = None,
        status_before: MessageStatus | None = None,
        priority: Priority | None = None,
    ) -> Message:
        """Retry a failed message (same id; status back to ``created``).

        The POST is never re-sent after an ambiguous failure (timeout, reset, 5xx): the
        message is read back once instead. If that read proves the retry took (a new attempt
        after the POST, or a message that left ``failure``; exactly, when ``attempts_before``
        and ``status_before`` give what you last read), the message is returned; otherwise
        :class:`OutcomeUnknownError` is raised with ``observed`` (the message read) and
        ``applied`` (``False``: it did not take; ``None``: cannot tell). A message returned
        after such a read has ``confirmed_by_readback`` set.

        Raises :class:`TooManyAttemptsError`, :class:`MessageNotRetryableError`,
        :class:`OutcomeUnknownError`, or any :class:`PostmanError` of the session.
        """
        message, confirmed = await _retry_readback.retry_message(
            self, message_id, (status_before, attempts_before), priority
        )
        return attrs.evolve(message, confirmed_by_readback=True) if confirmed else message

    async def send_batch(
        self,
        rows_or_csv: Iterable[Mapping[str, str]] | CsvSource,
        *,
        filename: str = "messages.csv",
        priority: Priority | None = None,
        guard_window: timedelta | float | None = None,
    ) -> BatchSendResult:
        """Send a batch as CSV uploads (form field ``file``).

        ``rows_or_csv``: row mappings (``recipient``, ``language`` and the template variables),
        CSV ``bytes``/``str`` content, a path (``os.PathLike``: a file of any size, never read
        whole into memory) or an open file. The whole CSV is checked as the API would before
        anything is sent. More rows than one file may hold (40 MB, and ``max_batch_rows``)
        are split into several uploads, each its own batch: ``parts`` lists them, and
        ``batch_id`` is the first's. Each part's lost or unreadable answer is read back as for
        :meth:`send_message` (then one page of the batch found confirms it).

        ``guard_window`` (a :class:`~datetime.timedelta` or seconds; default ``None``: off):
        refuse, with :class:`DuplicateUploadError`, a file (or part) whose batch was already
        created within that window, found by the same read-back (2 calls per part).

        A part that fails after others were sent raises :class:`PartialUploadError`, which
        carries the parts sent; a failure of the first part raises as it is.
        """
        if not filename.endswith(".csv") or any(c in filename for c in '/\\"\r\n'):
            raise ValidationError("filename", "must be a plain name ending in .csv")
        return await _batch_upload.send_batch(
            self, rows_or_csv, filename=filename, priority=priority, guard_window=guard_window
        )

    async def retry_batch(self, batch_id: str, *, priority: Priority | None = None) -> None:
        """Retry every failed message of a batch (201, no body).

        Any 2xx answer means the retry was accepted, whatever its body. Raises
        :class:`UnresolvedBatchMessagesError` (the server has then flipped the batch to
        ``messages_enqueuing_failed``: check with the orchestrator's ``retry_batch`` first),
        :class:`BatchNotRetryableError`, :class:`NoFailedBatchMessagesError`,
        :class:`OutcomeUnknownError`, or any :class:`PostmanError` of the session.
        """
        request = retry_batch_request(self.campaign_id, batch_id)
        await self._send(request, priority)

    def list_batch_messages(
        self,
        batch_id: str,
        *,
        page_size: int = 1000,
        search: str | None = None,
        priority: Priority | None = None,
    ) -> MessagePages:
        """Messages of a batch, newest first, with ``numAttempts`` and ``messageAttempts``."""
        build = functools.partial(
            list_batch_messages_request,
            self.campaign_id,
            batch_id,
            limit=page_size,
            search=search,
        )
        return self._listing(build, priority)

    def list_messages(
        self,
        *,
        page_size: int = 1000,
        search: str | None = None,
        priority: Priority | None = None,
    ) -> MessagePages:
        """Every message of the campaign (single and batch sends), newest first."""
        build = functools.partial(
            list_messages_request, self.campaign_id, limit=page_size, search=search
        )
        return self._listing(build, priority)

    def _listing(self, build: Callable[..., Request], priority: Priority | None) -> MessagePages:
        build()  # built once now, so bad input fails at the call, not at the first page

        async def fetch(*, after: str | None, before: str | None) -> Page:
            page: Page = await self._call(build(after=after, before=before), priority, Page)
            return page

        return MessagePages(fetch)
