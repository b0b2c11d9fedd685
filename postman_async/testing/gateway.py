"""What stands in front of the simulator's endpoints: the request log, seeded faults, auth, the IP
allow-list and the rate limiter (reference §1, §4.1, §6.2, §6.3), and the error envelope (§4.3).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

import attrs
from aiohttp import web

if TYPE_CHECKING:
    from .simulator import PostmanSimulator

ADMIN_PREFIX = "/__simulator__"
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
    server_error_after_rate: float = 0.0  # processed, then answered 500/502/503
    #: the body of a malformed answer (truncated JSON by default; ``b""``: empty; garbage)
    malformed_body: bytes = b'{"id": "message_trunc'
    #: only requests with these methods get the per-request faults (empty: every request)
    only_methods: tuple[str, ...] = ()


@attrs.define
class RequestRecord:
    time: float
    campaign_id: str | None
    method: str
    route: str
    status: int  # 0: connection dropped


def error(sim: PostmanSimulator, status: int, code: str, message: str, type_: str) -> web.Response:
    """The 2025 error envelope ``{"error": {code, message, type, id}}``."""
    body = {
        "error": {
            "code": code,
            "message": message,
            "type": type_,
            "id": f"err_{sim._fault_rng.getrandbits(64):016x}",
        }
    }
    return web.json_response(body, status=status)


def invalid(sim: PostmanSimulator, message: str) -> web.Response:
    return error(sim, 400, "parameter_invalid", message, "validation_error")


class Gateway:
    """The middleware every API request passes: log, faults, auth, allow-list, limiter."""

    def __init__(self, sim: PostmanSimulator) -> None:
        self.sim = sim

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(ADMIN_PREFIX):
            return await handler(request)
        network = self.sim.network
        if network.active:  # the way in: the server sees the request only now
            await self.sim.sleep(network.delay(self.sim._network_rng))
        response = await self._serve(request, handler)
        if network.active:  # the way back
            await self.sim.sleep(network.delay(self.sim._network_rng))
        return response

    async def _serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        record = RequestRecord(self.sim.clock(), None, request.method, "?", 0)
        self.sim.request_log.append(record)
        resource = request.match_info.route.resource
        record.route = resource.canonical if resource is not None else "(no route)"
        record.campaign_id = request.match_info.get("campaign_id")
        faults = self.sim.faults
        targeted = not faults.only_methods or request.method in faults.only_methods

        def chance(rate: float) -> bool:
            return targeted and self._chance(rate)

        if chance(faults.reset_before_rate):
            return self._drop(request)
        response: web.StreamResponse
        if chance(faults.server_error_rate):
            response = self._server_error()
        else:
            response = await self._authorised(request, handler, record)
            if chance(faults.reset_after_rate):
                return self._drop(request)
            if response.status < 300 and chance(faults.server_error_after_rate):
                response = self._server_error()
            if response.status < 300 and chance(faults.malformed_json_rate):
                response = web.Response(
                    status=response.status,
                    body=faults.malformed_body,
                    content_type="application/json",
                )
            if faults.latency > 0 and chance(faults.latency_rate):
                await asyncio.sleep(faults.latency)
        record.status = response.status
        # The Date header on the simulator's clock (as its timestamps), not the host's.
        response.headers.setdefault("Date", formatdate(self.sim.now(), usegmt=True))
        return response

    async def _authorised(
        self, request: web.Request, handler: Handler, record: RequestRecord
    ) -> web.StreamResponse:
        match = _BEARER.fullmatch(request.headers.get("Authorization", ""))
        if match is None:
            return web.json_response({"message": "Unauthorized", "statusCode": 401}, status=401)
        if request.match_info.route.resource is None:
            return error(self.sim, 404, "invalid_path", "Invalid path", "not_found_error")
        campaign = self.sim.campaigns.get(record.campaign_id or "")
        if campaign is None or match.group(1) not in campaign.api_keys:
            if not self.sim.invalid_key_envelope:
                return web.json_response({"message": "Unauthorized", "statusCode": 401}, status=401)
            return error(
                self.sim,
                401,
                "invalid_api_key_provided",
                "The API key provided is invalid.",
                "authentication_error",
            )
        if campaign.allowed_ips is not None and request.remote not in campaign.allowed_ips:
            status, code = self.sim.ip_error
            return error(
                self.sim,
                status,
                code,
                "The IP address used for this request is invalid.",
                "authentication_error",
            )
        if not await self.sim.limiter(campaign.id).admit():
            response = error(self.sim, 429, "too_many_requests", "Too many requests", "rate_limit")
            if self.sim.retry_after_header:
                response.headers["Retry-After"] = "1"
            return response
        return await handler(request)

    def _chance(self, rate: float) -> bool:
        return rate > 0 and self.sim._fault_rng.random() < rate

    def _drop(self, request: web.Request) -> web.Response:
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=599)  # never written: the connection is gone

    def _server_error(self) -> web.Response:
        status = self.sim._fault_rng.choice((500, 502, 503))
        if status == 500:
            return error(self.sim, 500, "internal_server_error", "Internal server error", "server")
        return web.Response(
            status=status, text="<html>Bad Gateway</html>", content_type="text/html"
        )

    async def admin_stats(self, request: web.Request) -> web.Response:
        """Ground truth for tests and benchmarks that run the simulator in another process
        (no auth, no rate limit: the simulator only listens on loopback by default)."""
        campaign_id = request.query.get("campaign", self.sim.campaign_id)
        stats = self.sim.stats(campaign_id)
        body: dict[str, Any] = {
            "requests": stats.requests,
            "throttled": stats.throttled,
            "maxPerSecond": stats.max_per_second,
            "byRoute": dict(stats.by_route),
            "retryPosts": sum(self.sim.posts.retries.values()),
            "maxRetryPostsPerMessage": max(self.sim.posts.retries.values(), default=0),
            "maxSendPostsPerAction": max(self.sim.posts.sends.values(), default=0),
        }
        if request.query.get("posts"):
            body["posts"] = self.sim.posts.to_dict()
        if request.query.get("times"):
            body["times"] = self.sim.request_times(campaign_id)
        return web.json_response(body)

    async def admin_advance(self, request: web.Request) -> web.Response:
        """``POST /__simulator__/advance?seconds=N``: move the simulator's time on (as
        :meth:`PostmanSimulator.advance`), so a test in another process steps the message
        lifecycle instead of sleeping."""
        try:
            seconds = float(request.query.get("seconds", ""))
            self.sim.advance(seconds)
        except ValueError:
            return web.json_response({"error": "seconds: a number >= 0"}, status=400)
        return web.json_response({"clock": self.sim.clock()})

    async def admin_messages(self, request: web.Request) -> web.Response:
        """``GET /__simulator__/messages?campaign=...&batch=...``: every message's status and
        attempt count, as the simulator knows them (ground truth for tests in another
        process)."""
        campaign_id = request.query.get("campaign", self.sim.campaign_id)
        batch_id = request.query.get("batch")
        messages = {
            m.id: {"status": self.sim.message_status(m.id), "attempts": len(m.attempts)}
            for m in self.sim.messages.values()
            if m.campaign_id == campaign_id and (batch_id is None or m.batch_id == batch_id)
        }
        return web.json_response({"messages": messages})
