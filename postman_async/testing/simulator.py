"""PostmanSimulator: a local Postman v2 server that behaves as the API is documented.

Run it in-process (``async with PostmanSimulator() as sim: sim.base_url``) or standalone
(``postman-async simulator --port 8080``). Where the documentation is silent the simulator
follows the reference's ASSUMPTIONs, each one a setting. It also keeps the ground truth that
tests need: every request with its time and status, the most requests seen in any sliding
second, 429s, and every processed POST per intended action (``posts``).
"""

from __future__ import annotations

import asyncio
import bisect
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence

import attrs
from aiohttp import web

from .endpoints import Endpoints
from .gateway import ADMIN_PREFIX, Faults, Gateway, RequestRecord
from .ground_truth import PostLedger
from .network import Network
from .server_limits import CampaignRateLimiter, max_in_window
from .state import (
    DEFAULT_STEP_DELAYS,
    Attempt,
    Campaign,
    SimBatch,
    SimMessage,
    next_attempt,
)

API_PREFIX = "/api/v2"
MAX_CSV_BYTES = 40 * 1024 * 1024


@attrs.frozen
class SimulatorStats:
    requests: int
    throttled: int
    max_per_second: int
    competitor_admitted: int
    by_route: Mapping[str, int]


class PostmanSimulator:
    """A faithful local Postman v2 API. See the module docstring and the README.

    Settings follow the reference's ASSUMPTIONs: ``max_attempts`` is the attempt cap with the
    original send counted (3, or 4 for the "retried 3 times" reading); ``retry_failure_rate``
    makes retried failures fail again (default: as ``failure_rate``); ``clock`` is injectable
    and :meth:`advance` moves the lifecycle on; ``faults`` injects seeded failures;
    ``network`` delays each request on its way in (before the rate limiter sees it) and out,
    waited with ``sleep``. ``load_test``: behave as the load-test environment (reference
    §1): every attempt stops at the aggregator and stays ``sending`` (never ``success``, no
    delivery error), and the rate limit is 200/s unless ``rate_limit`` says otherwise.
    """

    def __init__(
        self,
        *,
        campaigns: Sequence[Campaign] | None = None,
        rate_limit: float | None = None,
        load_test: bool = False,
        rate_limit_mode: str = "sliding",
        retry_after_header: bool = True,
        time_scale: float = 1.0,
        step_delays: Sequence[float] = DEFAULT_STEP_DELAYS,
        failure_rate: float = 0.0,
        retry_failure_rate: float | None = None,
        max_attempts: int = 3,
        max_csv_bytes: int = MAX_CSV_BYTES,
        max_batch_rows: int | None = None,
        strict_characters: bool = False,
        batch_enqueue_delay: float = 0.5,
        invalid_key_envelope: bool = True,
        ip_error: tuple[int, str] = (400, "invalid_ip_address_used"),
        faults: Faults | None = None,
        network: Network | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._rng = random.Random(seed)
        self._fault_rng = random.Random(seed + 1)
        self._network_rng = random.Random(seed + 2)
        #: one-way delays on the way in (before the limiter) and out; ``sleep`` waits them
        self.network = network or Network()
        self.sleep = sleep
        self.seed = seed
        self.campaigns: dict[str, Campaign] = {}
        for campaign in campaigns or [self._default_campaign()]:
            self.add_campaign(campaign)
        self.load_test = load_test
        self.rate_limit = rate_limit if rate_limit is not None else 200.0 if load_test else 10.0
        self.rate_limit_mode = rate_limit_mode
        self.retry_after_header = retry_after_header
        self.time_scale = time_scale
        self.step_delays = tuple(step_delays)
        self.failure_rate = failure_rate
        self.retry_failure_rate = retry_failure_rate
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
        self._base_clock = clock
        self._offset = 0.0
        self._mono0 = clock()
        self._epoch0 = time.time()
        self.messages: dict[str, SimMessage] = {}
        self.batches: dict[str, SimBatch] = {}
        self._index: dict[str, tuple[list[tuple[str, str]], list[SimMessage]]] = defaultdict(
            lambda: ([], [])
        )
        self._limiters: dict[str, CampaignRateLimiter] = {}
        self.request_log: list[RequestRecord] = []
        #: Ground truth: every processed POST per intended action, whatever its answer.
        self.posts = PostLedger()
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
    def listening(self) -> bool:
        """Whether it accepts connections (False while stopped or during :meth:`restart`)."""
        return self._site is not None

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
                clock=self.clock,
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
        return self._epoch0 + (self.clock() - self._mono0)

    def clock(self) -> float:
        """The simulator's monotonic clock: the injected one plus what :meth:`advance` added.
        Its rate limiter, request log and message lifecycle all read it."""
        return self._base_clock() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the simulator's time on: messages progress (and rate-limit windows pass) as if
        ``seconds`` had elapsed. Tests step the lifecycle with it instead of racing it."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self._offset += seconds

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

    def message_status(self, message_id: str) -> str:
        return self._status(self.messages[message_id])[0]

    def batch_status(self, batch_id: str) -> str:
        return self.batches[batch_id].status_at(self.now())

    # -- test helpers ----------------------------------------------------------------------

    def create_message(
        self,
        recipient: str = "6591234567",
        *,
        campaign_id: str | None = None,
        language: str = "english",
        values: Mapping[str, str] | None = None,
        outcome: tuple[str, str | None, str | None] | None = None,
        attempts: int = 1,
        age: float = 3600.0,
        outcomes: Sequence[tuple[str, str | None, str | None]] = (),
        batch_id: str | None = None,
    ) -> SimMessage:
        """Create a message directly (no HTTP, no rate limit), e.g. an old failed one.

        ``outcome`` fixes how the ``attempts`` made now end; ``outcomes`` how each attempt
        ends, in order, retries included (the last one repeats), e.g. fail three times, then
        succeed. ``age`` (seconds) puts the attempts in the past so they have resolved.
        """
        campaign = self.campaigns[campaign_id or self.campaign_id]
        vals = dict(values or {v: "test" for v in campaign.variables(language)})
        created = self.now() - age
        message = self._new_message(campaign, recipient, language, vals, created, batch_id)
        message.planned = list(outcomes)
        for index in range(attempts):
            message.attempts.append(self._attempt(message, message.created + index, outcome))
        return message

    def create_batch(
        self,
        recipients: Sequence[str],
        *,
        campaign_id: str | None = None,
        outcomes: Sequence[Sequence[tuple[str, str | None, str | None]]] | None = None,
        age: float = 3600.0,
    ) -> SimBatch:
        """Create an enqueued batch directly (no HTTP), one message per recipient;
        ``outcomes``, per message, as in :meth:`create_message`."""
        campaign = self.campaigns[campaign_id or self.campaign_id]
        created = self.now() - age
        batch = SimBatch(self._new_id("batch"), campaign.id, "batch.csv", created, created)
        self.batches[batch.id] = batch
        for index, recipient in enumerate(recipients):
            planned = outcomes[index] if outcomes else ()
            message = self.create_message(
                recipient, campaign_id=campaign.id, age=age, outcomes=planned, batch_id=batch.id
            )
            batch.message_ids.append(message.id)
        return batch

    def set_batch_status(self, batch_id: str, status: str | None) -> None:
        """Force a batch's status (``None``: back to its own lifecycle)."""
        self.batches[batch_id].forced_status = None if status is None else str(status)

    # -- domain ----------------------------------------------------------------------------

    def _attempt(
        self,
        message: SimMessage,
        started: float,
        outcome: tuple[str, str | None, str | None] | None = None,
        *,
        retry: bool = False,
    ) -> Attempt:
        return next_attempt(
            message,
            started,
            outcome,
            retry=retry,
            seed=self.seed,
            failure_rate=self.failure_rate,
            retry_failure_rate=self.retry_failure_rate,
            load_test=self.load_test,
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

    def _status(self, message: SimMessage) -> tuple[str, float]:
        return message.attempts[-1].status_at(self.now(), self.lifecycle_delays)

    def _make_app(self) -> web.Application:
        gateway = Gateway(self)
        app = web.Application(
            middlewares=[gateway.middleware],
            client_max_size=self.max_csv_bytes + 1024 * 1024,
        )
        endpoints = Endpoints(self)
        p = API_PREFIX + "/campaigns/{campaign_id}"
        app.router.add_post(p + "/messages", endpoints.send)
        app.router.add_get(p + "/messages", endpoints.list_campaign)
        app.router.add_get(p + "/messages/{message_id}", endpoints.get)
        app.router.add_post(p + "/messages/{message_id}/retry", endpoints.retry)
        app.router.add_post(p + "/batch/messages", endpoints.send_batch)
        app.router.add_post(p + "/batch/{batch_id}/retry", endpoints.retry_batch)
        app.router.add_get(p + "/batch/{batch_id}/messages", endpoints.list_batch)
        app.router.add_get(ADMIN_PREFIX + "/stats", gateway.admin_stats)
        app.router.add_post(ADMIN_PREFIX + "/advance", gateway.admin_advance)
        app.router.add_get(ADMIN_PREFIX + "/messages", gateway.admin_messages)
        return app


def campaign_summary(sim: PostmanSimulator) -> str:
    """What the standalone simulator prints at start-up."""
    lines = [f"Postman v2 simulator listening on {sim.base_url}"]
    for campaign in sim.campaigns.values():
        lines.append(f"  campaign id: {campaign.id}")
        for key in campaign.api_keys:
            lines.append(f"  API key:     {key}")
    return "\n".join(lines)
