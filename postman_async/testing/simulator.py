"""PostmanSimulator: a local Postman v2 server that behaves as the API is documented.

Run it in-process (``async with PostmanSimulator() as sim: sim.base_url``) or standalone
(``postman-async simulator --port 8080``). Where the documentation is silent the simulator
follows the reference's ASSUMPTIONs, each one a setting. It also keeps the ground truth that
tests need: every request with its time and status, the most requests seen in any sliding
second, 429s, and per-message counts of processed send and retry POSTs.
"""

from __future__ import annotations

import asyncio
import bisect
import csv
import io
import random
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import attrs
from aiohttp import web

from ..eligibility import (
    BatchVerdict,
    MessageVerdict,
    batch_retry_verdict,
    message_retry_verdict,
)
from ..models import BatchStatus, MessageStatus
from .pagination import CursorError, decode_cursor, paginate
from .server_limits import CampaignRateLimiter, max_in_window
from .state import (
    DEFAULT_STEP_DELAYS,
    Attempt,
    Campaign,
    SimBatch,
    SimMessage,
    draw_outcome,
    iso,
)

API_PREFIX = "/api/v2"
ADMIN_PREFIX = "/__simulator__"
MAX_CSV_BYTES = 40 * 1024 * 1024
MAX_BODY_CHARS = 1000  # excluding header and footer (reference §6.8)
MAX_FULL_MESSAGE_CHARS = 1530
_NRIC = re.compile(r"[STFGM][0-9]{7}[A-Z]")
# Not rejected by the real API as far as documented; rejected in strict mode (§6.8).
_UNSUPPORTED = re.compile(r"[|^€{}\[~\]\\]|[\U0001F000-\U0001FAFF\u2600-\u27BF]")
_RECIPIENT = re.compile(r"[1-9][0-9]{7,14}")
_BEARER = re.compile(r"Bearer ([\x21-\x7e]+)")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@attrs.define
class Faults:
    """Seeded fault injection; everything is off by default."""

    server_error_rate: float = 0.0  # 500/502/503 before processing
    reset_before_rate: float = 0.0  # connection dropped before processing
    reset_after_rate: float = 0.0  # processed, then the connection is dropped
    latency: float = 0.0  # seconds added after processing ...
    latency_rate: float = 1.0  # ... to this share of responses
    malformed_json_rate: float = 0.0  # processed, then a truncated JSON body
    competing_share: float = 0.0  # share of each campaign's budget taken by another client


@attrs.define
class RequestRecord:
    time: float
    campaign_id: str | None
    method: str
    route: str
    status: int  # 0: connection dropped


@attrs.frozen
class SimulatorStats:
    requests: int
    throttled: int
    max_per_second: int
    competitor_admitted: int
    by_route: Mapping[str, int]


class PostmanSimulator:
    """A faithful local Postman v2 API. See the module docstring and the README."""

    def __init__(
        self,
        *,
        campaigns: Sequence[Campaign] | None = None,
        rate_limit: float = 10.0,
        rate_limit_mode: str = "sliding",
        retry_after_header: bool = True,
        time_scale: float = 1.0,
        step_delays: Sequence[float] = DEFAULT_STEP_DELAYS,
        failure_rate: float = 0.0,
        max_attempts: int = 3,
        max_csv_bytes: int = MAX_CSV_BYTES,
        max_batch_rows: int | None = None,
        strict_characters: bool = False,
        batch_enqueue_delay: float = 0.5,
        invalid_key_envelope: bool = True,
        ip_error: tuple[int, str] = (400, "invalid_ip_address_used"),
        faults: Faults | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(seed + 1)
        self.seed = seed
        self.campaigns: dict[str, Campaign] = {}
        for campaign in campaigns or [self._default_campaign()]:
            self.add_campaign(campaign)
        self.rate_limit = rate_limit
        self.rate_limit_mode = rate_limit_mode
        self.retry_after_header = retry_after_header
        self.time_scale = time_scale
        self.step_delays = tuple(step_delays)
        self.failure_rate = failure_rate
        self.max_attempts = max_attempts
        self.max_csv_bytes = max_csv_bytes
        self.max_batch_rows = max_batch_rows
        self.strict_characters = strict_characters
        self.batch_enqueue_delay = batch_enqueue_delay
        self.invalid_key_envelope = invalid_key_envelope
        self.ip_error = ip_error
        self.faults = faults or Faults()
        self.host = host
        self.port = port
        self._clock = clock
        self._mono0 = clock()
        self._epoch0 = time.time()
        self.messages: dict[str, SimMessage] = {}
        self.batches: dict[str, SimBatch] = {}
        self._index: dict[str, tuple[list[tuple[str, str]], list[SimMessage]]] = defaultdict(
            lambda: ([], [])
        )
        self._limiters: dict[str, CampaignRateLimiter] = {}
        self.request_log: list[RequestRecord] = []
        self.send_posts: Counter[str] = Counter()
        self.retry_posts: Counter[str] = Counter()
        self.batch_retry_posts: Counter[str] = Counter()
        self.batch_retried_messages: Counter[str] = Counter()
        self._join_ids = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.app = self._make_app()

    # -- setup -----------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{uuid.UUID(int=self._rng.getrandbits(128), version=4)}"

    def _default_campaign(self) -> Campaign:
        campaign_id = self._new_id("campaign")
        key = "key_test_" + uuid.UUID(int=self._rng.getrandbits(128)).hex
        return Campaign(id=campaign_id, api_keys=(key,))

    def add_campaign(self, campaign: Campaign) -> Campaign:
        for key in campaign.api_keys:
            for other in self.campaigns.values():
                if key in other.api_keys:
                    raise ValueError("an API key belongs to one campaign only")
        self.campaigns[campaign.id] = campaign
        return campaign

    @property
    def campaign(self) -> Campaign:
        """The first (default) campaign."""
        return next(iter(self.campaigns.values()))

    @property
    def campaign_id(self) -> str:
        return self.campaign.id

    @property
    def api_key(self) -> str:
        return self.campaign.api_keys[0]

    @property
    def base_url(self) -> str:
        if self._site is None:
            raise RuntimeError("the simulator is not running")
        return f"http://{self.host}:{self.port}{API_PREFIX}"

    def limiter(self, campaign_id: str) -> CampaignRateLimiter:
        limiter = self._limiters.get(campaign_id)
        if limiter is None:
            limiter = self._limiters[campaign_id] = CampaignRateLimiter(
                self.rate_limit,
                mode=self.rate_limit_mode,
                clock=self._clock,
                competing_share=self.faults.competing_share,
            )
        return limiter

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> PostmanSimulator:
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await self._bind()
        return self

    async def _bind(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await self._site.start()
        server = self._site._server
        if self.port == 0 and server is not None:
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1]

    async def restart(self, downtime: float = 0.0) -> None:
        """Stop listening (connections drop), wait ``downtime`` s, listen again on the same
        port with the same state: a server restart as clients see it."""
        if self._site is not None:
            await self._site.stop()
        self._site = None
        if downtime > 0:
            await asyncio.sleep(downtime)
        await self._bind()

    async def stop(self) -> None:
        runner, self._runner, self._site = self._runner, None, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> PostmanSimulator:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- clock -----------------------------------------------------------------------------

    def now(self) -> float:
        """The simulator's wall-clock time (epoch seconds), as its timestamps and its ``Date``
        header show it. ``time_scale`` speeds up the message lifecycle, not the clock."""
        return self._epoch0 + (self._clock() - self._mono0)

    @property
    def lifecycle_delays(self) -> tuple[float, ...]:
        """Seconds spent in each status, after ``time_scale``."""
        return tuple(d / self.time_scale for d in self.step_delays)

    # -- ground truth ----------------------------------------------------------------------

    def request_times(self, campaign_id: str | None = None) -> list[float]:
        """Arrival times (simulator clock, seconds) of the requests for a campaign."""
        cid = campaign_id or self.campaign_id
        return [r.time for r in self.request_log if r.campaign_id == cid]

    def stats(self, campaign_id: str | None = None) -> SimulatorStats:
        cid = campaign_id or self.campaign_id
        records = [r for r in self.request_log if r.campaign_id == cid]
        limiter = self._limiters.get(cid)
        return SimulatorStats(
            requests=len(records),
            throttled=sum(1 for r in records if r.status == 429),
            max_per_second=max_in_window([r.time for r in records]),
            competitor_admitted=limiter.competitor_admitted if limiter else 0,
            by_route=Counter(f"{r.method} {r.route}" for r in records),
        )

    def message_status(self, message_id: str) -> MessageStatus:
        return self._status(self.messages[message_id])[0]

    def batch_status(self, batch_id: str) -> BatchStatus:
        return self.batches[batch_id].status_at(self.now())

    # -- test helpers ----------------------------------------------------------------------

    def create_message(
        self,
        recipient: str = "6591234567",
        *,
        campaign_id: str | None = None,
        language: str = "english",
        values: Mapping[str, str] | None = None,
        outcome: tuple[MessageStatus, str | None, str | None] | None = None,
        attempts: int = 1,
        age: float = 3600.0,
    ) -> SimMessage:
        """Create a message directly (no HTTP, no rate limit), e.g. an old failed one.

        ``outcome`` fixes how every attempt ends; ``age`` (seconds) puts its attempts in the
        past so they have already resolved.
        """
        campaign = self.campaigns[campaign_id or self.campaign_id]
        vals = dict(values or {v: "test" for v in campaign.variables(language)})
        message = self._new_message(campaign, recipient, language, vals, self.now() - age)
        for index in range(attempts):
            message.attempts.append(self._attempt(message, message.created + index, outcome))
        return message

    def set_batch_status(self, batch_id: str, status: BatchStatus | None) -> None:
        self.batches[batch_id].forced_status = status

    # -- domain ----------------------------------------------------------------------------

    def _attempt(
        self,
        message: SimMessage,
        started: float,
        outcome: tuple[MessageStatus, str | None, str | None] | None = None,
    ) -> Attempt:
        index = len(message.attempts)
        rng = random.Random(f"{self.seed}:{message.id}:{index}")
        status, error_type, code = outcome or draw_outcome(
            message.recipient, rng, self.failure_rate
        )
        return Attempt(
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            started=started,
            outcome=status,
            error_type=error_type,
            error_code=code,
        )

    def _new_message(
        self,
        campaign: Campaign,
        recipient: str,
        language: str,
        values: dict[str, str],
        created: float,
        batch_id: str | None = None,
    ) -> SimMessage:
        self._join_ids += 1
        message = SimMessage(
            id=self._new_id("message"),
            campaign_id=campaign.id,
            recipient=recipient,
            language=language,
            values=values,
            full_message=campaign.render(language, values),
            created=created,
            batch_id=batch_id,
            join_id=self._join_ids,
        )
        self.messages[message.id] = message
        self._insert(campaign.id, message)
        if batch_id:
            self._insert(f"batch:{batch_id}", message)
        return message

    def _insert(self, index_key: str, message: SimMessage) -> None:
        keys, items = self._index[index_key]
        key = message.sort_key
        position = bisect.bisect_right(keys, key)
        keys.insert(position, key)
        items.insert(position, message)

    def _status(self, message: SimMessage) -> tuple[MessageStatus, float]:
        return message.attempts[-1].status_at(self.now(), self.lifecycle_delays)

    # -- JSON shapes -----------------------------------------------------------------------

    def _message_base(self, message: SimMessage) -> dict[str, Any]:
        campaign = self.campaigns[message.campaign_id]
        status, since = self._status(message)
        return {
            "createdAt": iso(message.created),
            "updatedAt": iso(since),
            "id": message.id,
            "recipient": message.recipient,
            "values": message.values,
            "fullMessage": message.full_message,
            "latestStatus": status.value,
            "templateBodyId": campaign.template_body_id(message.language),
            "campaignId": message.campaign_id,
            "language": message.language,
            "creatorId": campaign.creator_id,
        }

    def _template_body(self, message: SimMessage) -> dict[str, Any]:
        campaign = self.campaigns[message.campaign_id]
        return {
            "createdAt": iso(self._epoch0),
            "updatedAt": iso(self._epoch0),
            "id": campaign.template_body_id(message.language),
            "templateId": f"template_{campaign.id.removeprefix('campaign_')}",
            "language": message.language,
            "body": campaign.templates[message.language],
            "creatorId": campaign.creator_id,
        }

    def _batch_json(self, batch: SimBatch, message: SimMessage) -> dict[str, Any]:
        campaign = self.campaigns[batch.campaign_id]
        return {
            "createdAt": iso(batch.created),
            "updatedAt": iso(max(batch.updated, batch.created)),
            "id": batch.id,
            "originalFileName": batch.original_file_name,
            "status": batch.status_at(self.now()).value,
            "campaignId": batch.campaign_id,
            "creatorId": campaign.creator_id,
            "totalMessages": len(batch.message_ids),
            "BatchMessage": {
                "createdAt": iso(message.created),
                "updatedAt": iso(message.created),
                "id": str(message.join_id),
                "batchId": batch.id,
                "messageId": message.id,
            },
        }

    def _batches(self, message: SimMessage) -> list[dict[str, Any]]:
        if not message.batch_id:
            return []
        return [self._batch_json(self.batches[message.batch_id], message)]

    def _message_get(self, message: SimMessage) -> dict[str, Any]:
        now = self.now()
        attempts = []
        for attempt in reversed(message.attempts):  # newest first
            status, _ = attempt.status_at(now, self.lifecycle_delays)
            item: dict[str, Any] = {"status": status.value, "createdAt": iso(attempt.started)}
            sent = attempt.reached(MessageStatus.SENT, now, self.lifecycle_delays)
            if sent is not None:
                item["sentAt"] = iso(sent)
                delivered = attempt.reached(MessageStatus.SUCCESS, now, self.lifecycle_delays)
                item["deliveredAt"] = iso(delivered) if delivered is not None else None
            if status == MessageStatus.FAILURE:
                item["error"] = {"type": attempt.error_type, "code": attempt.error_code}
            attempts.append(item)
        campaign = self.campaigns[message.campaign_id]
        return {
            **self._message_base(message),
            "templateBody": self._template_body(message),
            "batches": self._batches(message),
            "creatorEmail": campaign.creator_email,
            "attempts": attempts,
        }

    def _message_batch_item(self, message: SimMessage) -> dict[str, Any]:
        now = self.now()
        campaign = self.campaigns[message.campaign_id]
        flat = []
        for attempt in reversed(message.attempts):
            status, since = attempt.status_at(now, self.lifecycle_delays)
            sent = attempt.reached(MessageStatus.SENT, now, self.lifecycle_delays)
            delivered = attempt.reached(MessageStatus.SUCCESS, now, self.lifecycle_delays)
            failed = status == MessageStatus.FAILURE
            flat.append(
                {
                    "id": attempt.id,
                    "messageId": message.id,
                    "status": status.value,
                    "errorType": attempt.error_type if failed else None,
                    "errorCode": attempt.error_code if failed else None,
                    "sentAt": iso(sent) if sent is not None else None,
                    "deliveredAt": iso(delivered) if delivered is not None else None,
                    "createdAt": iso(attempt.started),
                    "updatedAt": iso(since),
                    "externalAttemptId": "",
                    "metadata": {},
                    "creatorId": campaign.creator_id,
                    "creator": {"email": campaign.creator_email},
                }
            )
        return {
            **self._message_base(message),
            "templateBody": self._template_body(message),
            "creatorEmail": campaign.creator_email,
            "numAttempts": len(message.attempts),
            "messageAttempts": flat,
        }

    def _message_campaign_item(self, message: SimMessage) -> dict[str, Any]:
        item = {
            **self._message_base(message),
            "templateBody": self._template_body(message),
            "batches": self._batches(message),
        }
        if message.batch_id:
            item["batchId"] = message.batch_id
        return item

    # -- HTTP plumbing ---------------------------------------------------------------------

    def _error(self, status: int, code: str, message: str, type_: str) -> web.Response:
        body = {
            "error": {
                "code": code,
                "message": message,
                "type": type_,
                "id": f"err_{self._fault_rng.getrandbits(64):016x}",
            }
        }
        return web.json_response(body, status=status)

    def _invalid(self, message: str) -> web.Response:
        return self._error(400, "parameter_invalid", message, "validation_error")

    def _make_app(self) -> web.Application:
        app = web.Application(
            middlewares=[self._middleware], client_max_size=self.max_csv_bytes + 1024 * 1024
        )
        p = API_PREFIX + "/campaigns/{campaign_id}"
        app.router.add_post(p + "/messages", self._send)
        app.router.add_get(p + "/messages", self._list_campaign)
        app.router.add_get(p + "/messages/{message_id}", self._get)
        app.router.add_post(p + "/messages/{message_id}/retry", self._retry)
        app.router.add_post(p + "/batch/messages", self._send_batch)
        app.router.add_post(p + "/batch/{batch_id}/retry", self._retry_batch)
        app.router.add_get(p + "/batch/{batch_id}/messages", self._list_batch)
        app.router.add_get(ADMIN_PREFIX + "/stats", self._admin_stats)
        return app

    async def _admin_stats(self, request: web.Request) -> web.Response:
        """Ground truth for tests and benchmarks that run the simulator in another process
        (no auth, no rate limit: the simulator only listens on loopback by default)."""
        campaign_id = request.query.get("campaign", self.campaign_id)
        stats = self.stats(campaign_id)
        body: dict[str, Any] = {
            "requests": stats.requests,
            "throttled": stats.throttled,
            "maxPerSecond": stats.max_per_second,
            "byRoute": dict(stats.by_route),
            "retryPosts": sum(self.retry_posts.values()),
            "maxRetryPostsPerMessage": max(self.retry_posts.values(), default=0),
        }
        if request.query.get("times"):
            body["times"] = self.request_times(campaign_id)
        return web.json_response(body)

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        record = RequestRecord(self._clock(), None, request.method, "?", 0)
        self.request_log.append(record)
        resource = request.match_info.route.resource
        record.route = resource.canonical if resource is not None else "(no route)"
        record.campaign_id = request.match_info.get("campaign_id")
        faults = self.faults
        if self._chance(faults.reset_before_rate):
            return self._drop(request)
        response: web.StreamResponse
        if self._chance(faults.server_error_rate):
            response = self._server_error()
        else:
            response = await self._authorised(request, handler, record)
            if self._chance(faults.reset_after_rate):
                return self._drop(request)
            if response.status < 300 and self._chance(faults.malformed_json_rate):
                response = web.Response(
                    status=response.status,
                    body=b'{"id": "message_trunc',
                    content_type="application/json",
                )
            if faults.latency > 0 and self._chance(faults.latency_rate):
                await asyncio.sleep(faults.latency)
        record.status = response.status
        return response

    async def _authorised(
        self, request: web.Request, handler: Handler, record: RequestRecord
    ) -> web.StreamResponse:
        match = _BEARER.fullmatch(request.headers.get("Authorization", ""))
        if match is None:
            return web.json_response({"message": "Unauthorized", "statusCode": 401}, status=401)
        if request.match_info.route.resource is None:
            return self._error(404, "invalid_path", "Invalid path", "not_found_error")
        campaign = self.campaigns.get(record.campaign_id or "")
        if campaign is None or match.group(1) not in campaign.api_keys:
            if not self.invalid_key_envelope:
                return web.json_response({"message": "Unauthorized", "statusCode": 401}, status=401)
            return self._error(
                401,
                "invalid_api_key_provided",
                "The API key provided is invalid.",
                "authentication_error",
            )
        if campaign.allowed_ips is not None and request.remote not in campaign.allowed_ips:
            status, code = self.ip_error
            return self._error(
                status,
                code,
                "The IP address used for this request is invalid.",
                "authentication_error",
            )
        if not await self.limiter(campaign.id).admit():
            response = self._error(429, "too_many_requests", "Too many requests", "rate_limit")
            if self.retry_after_header:
                response.headers["Retry-After"] = "1"
            return response
        return await handler(request)

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self._fault_rng.random() < rate

    def _drop(self, request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=599)  # never written: the connection is gone

    def _server_error(self) -> web.Response:
        status = self._fault_rng.choice((500, 502, 503))
        if status == 500:
            return self._error(500, "internal_server_error", "Internal server error", "server")
        return web.Response(
            status=status, text="<html>Bad Gateway</html>", content_type="text/html"
        )

    def _campaign(self, request: web.Request) -> Campaign:
        return self.campaigns[request.match_info["campaign_id"]]

    # -- validation ------------------------------------------------------------------------

    def _check_message(
        self, campaign: Campaign, recipient: object, language: object, values: object
    ) -> tuple[str, str, dict[str, str]] | str:
        """(recipient, language, values), or the reason they are invalid."""
        if isinstance(recipient, str) and campaign.nric_phones is not None:
            nric = recipient.strip().upper()
            if _NRIC.fullmatch(nric):
                if nric not in campaign.nric_phones:
                    return "No phone number is registered for this NRIC."
                recipient = campaign.nric_phones[nric]
        if not isinstance(recipient, str) or not _valid_recipient(recipient.strip()):
            return "Invalid recipient, ensure it is a valid normalized phone number, eg 6591112222."
        if not isinstance(language, str) or language.lower() not in campaign.languages:
            return (
                f"{language} is not supported. available language(s) for this campaign: "
                f"{', '.join(campaign.languages)}"
            )
        lang = language.lower()
        if not isinstance(values, dict):
            return "Validation failed (expected type is object)"
        expected = campaign.variables(lang)
        missing = sorted(expected - set(values))
        extra = sorted(set(values) - expected)
        if missing:
            return f"Missing template variable(s): {', '.join(missing)}"
        if extra:
            return f"Unknown template variable(s): {', '.join(extra)}"
        for key, value in values.items():
            if not isinstance(value, str) or not value.strip():
                return f"Template variable {key} must be a non-empty string"
        body = campaign.body(lang, values)
        if len(body) > MAX_BODY_CHARS:
            return f"Message body is {len(body)} characters; the limit is {MAX_BODY_CHARS}"
        if len(campaign.render(lang, values)) > MAX_FULL_MESSAGE_CHARS:
            return f"The full message exceeds {MAX_FULL_MESSAGE_CHARS} characters"
        if self.strict_characters and (bad := _UNSUPPORTED.findall(body)):
            return f"Unsupported character(s): {' '.join(sorted(set(bad)))}"
        return recipient.strip(), lang, dict(values)

    # -- endpoints -------------------------------------------------------------------------

    async def _send(self, request: web.Request) -> web.Response:
        campaign = self._campaign(request)
        try:
            body = await request.json()
        except ValueError:
            return self._invalid("Request body must be a JSON object")
        if not isinstance(body, dict):
            return self._invalid("Request body must be a JSON object")
        checked = self._check_message(
            campaign, body.get("recipient"), body.get("language"), body.get("values")
        )
        if isinstance(checked, str):
            return self._invalid(checked)
        recipient, language, values = checked
        message = self._new_message(campaign, recipient, language, values, self.now())
        message.attempts.append(self._attempt(message, message.created))
        self.send_posts[message.id] += 1
        return web.json_response(self._message_base(message), status=201)

    def _find(self, request: web.Request) -> SimMessage | None:
        message = self.messages.get(request.match_info["message_id"])
        if message is None or message.campaign_id != request.match_info["campaign_id"]:
            return None
        return message

    async def _get(self, request: web.Request) -> web.Response:
        message = self._find(request)
        if message is None:
            return self._error(404, "not_found", "Message not found", "not_found_error")
        return web.json_response(self._message_get(message))

    async def _retry(self, request: web.Request) -> web.Response:
        message = self._find(request)
        batch = self.batches.get(message.batch_id) if message and message.batch_id else None
        verdict = (
            MessageVerdict.NOT_IN_FAILURE
            if message is None
            else message_retry_verdict(
                self._status(message)[0],
                len(message.attempts),
                batch_status=batch.status_at(self.now()) if batch else None,
                in_batch=batch is not None,
                max_attempts=self.max_attempts,
            )
        )
        if verdict == MessageVerdict.EXHAUSTED:
            return self._error(
                400,
                "too_many_message_attempts_error",
                "Message can no longer be retried as it has reached the maximum number of "
                f"attempts of {self.max_attempts}.",
                "domain_error",
            )
        if verdict != MessageVerdict.RETRYABLE or message is None:
            return self._error(
                400,
                "message_not_found_or_retry_message_not_in_failure_status",
                "Message cannot be retried as it does not exist or it has not failed.",
                "domain_error",
            )
        message.attempts.append(self._attempt(message, self.now()))
        self.retry_posts[message.id] += 1
        return web.json_response(self._message_base(message), status=201)

    async def _send_batch(self, request: web.Request) -> web.Response:
        campaign = self._campaign(request)
        if not request.content_type.startswith("multipart/"):
            return self._invalid("Upload the CSV file as multipart/form-data in field 'file'")
        reader = await request.multipart()
        data: bytes | None = None
        filename = "upload.csv"
        while (part := await reader.next()) is not None:
            if getattr(part, "name", None) != "file":
                continue
            filename = getattr(part, "filename", None) or filename
            chunks, size = [], 0
            while chunk := await part.read_chunk(65536):  # type: ignore[union-attr]
                size += len(chunk)
                if size > self.max_csv_bytes:
                    return self._invalid(
                        f"File too large, max file size is {self.max_csv_bytes // 2**20}MB"
                    )
                chunks.append(chunk)
            data = b"".join(chunks)
        if data is None:
            return self._invalid("A CSV file is required in form field 'file'")
        if not filename.lower().endswith(".csv"):
            return self._invalid("Only CSV files are accepted")
        rows = self._parse_batch(campaign, data)
        if isinstance(rows, str):
            return self._invalid(rows)
        now = self.now()
        batch = SimBatch(
            id=self._new_id("batch"),
            campaign_id=campaign.id,
            original_file_name=filename,
            created=now,
            enqueued_at=now + self.batch_enqueue_delay / self.time_scale,
            updated=now,
        )
        self.batches[batch.id] = batch
        for recipient, language, values in rows:
            message = self._new_message(campaign, recipient, language, values, now, batch.id)
            message.attempts.append(self._attempt(message, now))
            batch.message_ids.append(message.id)
            self.send_posts[message.id] += 1
        return web.json_response({"isValid": True, "batchId": batch.id}, status=201)

    def _parse_batch(
        self, campaign: Campaign, data: bytes
    ) -> list[tuple[str, str, dict[str, str]]] | str:
        try:
            text = data.decode("utf-8-sig")
            records = list(csv.reader(io.StringIO(text, newline="")))
        except (UnicodeDecodeError, csv.Error) as exc:
            return f"Invalid CSV file: {exc}"
        records = [r for r in records if any(cell.strip() for cell in r)]
        if not records:
            return "Invalid CSV file: the file is empty"
        header = [h.strip().lower() for h in records[0]]
        if "recipient" not in header or "language" not in header:
            return "Invalid CSV file: the header must include recipient and language"
        known = set().union(*(campaign.variables(lang) for lang in campaign.languages))
        unknown = [h for h in header if h not in known | {"recipient", "language"}]
        if unknown or len(set(header)) != len(header):
            return f"Invalid CSV file: unknown or duplicate column(s): {', '.join(unknown)}"
        if len(records) == 1:
            return "Invalid CSV file: no message rows"
        if self.max_batch_rows is not None and len(records) - 1 > self.max_batch_rows:
            return f"Invalid CSV file: at most {self.max_batch_rows} rows are allowed"
        rows, errors = [], []
        for line, record in enumerate(records[1:], start=2):
            if len(record) != len(header):
                errors.append(f"row {line}: expected {len(header)} columns")
                continue
            cells = dict(zip(header, record, strict=True))
            recipient, language = cells.pop("recipient"), cells.pop("language")
            lang = language.strip().lower()
            values = (
                {k: v for k, v in cells.items() if k in campaign.variables(lang)}
                if (lang in campaign.languages)
                else cells
            )
            checked = self._check_message(campaign, recipient, language.strip(), values)
            if isinstance(checked, str):
                errors.append(f"row {line}: {checked}")
            else:
                rows.append(checked)
            if len(errors) >= 10:
                break
        if errors:
            return "Invalid CSV file: " + "; ".join(errors)
        return rows

    async def _retry_batch(self, request: web.Request) -> web.Response:
        campaign = self._campaign(request)
        batch = self.batches.get(request.match_info["batch_id"])
        now = self.now()
        if batch is None or batch.campaign_id != campaign.id:
            verdict = BatchVerdict.NOT_RETRYABLE
        else:
            messages = [self.messages[i] for i in batch.message_ids]
            verdict = batch_retry_verdict(
                batch.status_at(now),
                ((self._status(m)[0], len(m.attempts)) for m in messages),
                max_attempts=self.max_attempts,
            )
        if verdict == BatchVerdict.NOT_RETRYABLE:
            return self._error(
                400,
                verdict.value,
                "Batch cannot be retried as it does not exist or is currently not retryable.",
                "domain_error",
            )
        assert batch is not None
        if verdict == BatchVerdict.UNRESOLVED:
            batch.forced_status = BatchStatus.MESSAGES_ENQUEUING_FAILED
            batch.updated = now
            return self._error(
                400,
                verdict.value,
                "Batch cannot be retried as there is at least one batch message that is still "
                "unresolved.",
                "domain_error",
            )
        if verdict == BatchVerdict.NOTHING_TO_RETRY:
            return self._error(
                400,
                verdict.value,
                "Batch cannot be retried as either all messages are successful or all failed "
                "messages have exceeded the maximum number of attempts.",
                "domain_error",
            )
        for message in messages:
            if self._status(message)[0] == MessageStatus.FAILURE and (
                len(message.attempts) < self.max_attempts
            ):
                message.attempts.append(self._attempt(message, now))
                self.batch_retried_messages[message.id] += 1
        self.batch_retry_posts[batch.id] += 1
        batch.forced_status = BatchStatus.MESSAGES_ENQUEUED
        batch.updated = now
        return web.Response(status=201)

    def _listing(
        self, request: web.Request, index_key: str, shape: Callable[[SimMessage], dict[str, Any]]
    ) -> web.Response:
        query = request.query
        try:
            limit = int(query.get("limit", "10"))
        except ValueError:
            return self._invalid("limit must be an integer from 1 to 1000")
        if not 1 <= limit <= 1000:
            return self._invalid("limit must be an integer from 1 to 1000")
        if "after" in query and "before" in query:
            return self._invalid("Use either after or before, not both")
        try:
            after = decode_cursor(query["after"]) if "after" in query else None
            before = decode_cursor(query["before"]) if "before" in query else None
        except CursorError:
            return self._invalid("Invalid cursor")
        keys, items = self._index[index_key]
        search = query.get("search")
        if search:
            pairs = [(k, m) for k, m in zip(keys, items, strict=True) if search in m.recipient]
            keys, items = [k for k, _ in pairs], [m for _, m in pairs]
        page, page_data = paginate(keys, items, limit=limit, after=after, before=before)
        return web.json_response({"data": [shape(m) for m in page], "pageData": page_data})

    async def _list_campaign(self, request: web.Request) -> web.Response:
        return self._listing(
            request, request.match_info["campaign_id"], self._message_campaign_item
        )

    async def _list_batch(self, request: web.Request) -> web.Response:
        batch = self.batches.get(request.match_info["batch_id"])
        if batch is None or batch.campaign_id != request.match_info["campaign_id"]:
            return self._error(404, "not_found", "Batch not found", "not_found_error")
        return self._listing(request, f"batch:{batch.id}", self._message_batch_item)


def _valid_recipient(recipient: str) -> bool:
    if not _RECIPIENT.fullmatch(recipient):
        return False
    return not recipient.startswith("65") or len(recipient) == 10


def campaign_summary(sim: PostmanSimulator) -> str:
    """What the standalone simulator prints at start-up."""
    lines = [f"Postman v2 simulator listening on {sim.base_url}"]
    for campaign in sim.campaigns.values():
        lines.append(f"  campaign id: {campaign.id}")
        for key in campaign.api_keys:
            lines.append(f"  API key:     {key}")
    return "\n".join(lines)
