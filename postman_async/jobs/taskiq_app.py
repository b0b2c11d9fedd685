"""The taskiq wiring: a Redis Stream broker and one thin task per chunk.

Workers: ``postman-async job worker`` (or ``taskiq worker postman_async.jobs.taskiq_app:broker``).
Settings come from the environment, so every worker host is configured the same way:

- ``POSTMAN_ASYNC_REDIS_URL``: the Redis that holds the broker's stream, the jobs and the
  campaign's shared limiter (default ``redis://127.0.0.1:6379/0``);
- the campaigns this worker serves, with their keys and base URLs (never stored in Redis):
  ``POSTMAN_ASYNC_CAMPAIGNS_FILE``, or ``POSTMAN_CAMPAIGN_ID`` with ``POSTMAN_API_KEY`` (or
  ``POSTMAN_API_KEY_FILE``) and ``POSTMAN_BASE_URL`` (:mod:`postman_async.jobs.config`). A job
  names a campaign only; one this worker does not serve is refused, and recorded so;
- ``POSTMAN_ASYNC_FAILPOINTS``: fault injection for drills and tests only, e.g.
  ``after_intent=message_1`` SIGKILLs the worker right after that ID's intent is durable
  (``before_intent=...``: after its token, before the intent; ``before_post=...``: as its
  POST is about to be written; ``before_result=...``: after its POST was answered, before
  its result is written); ``...=message_1@stop`` SIGSTOPs it there instead.

taskiq-redis facts this relies on (see the README): the stream broker acks after the task
returns, so a killed worker's task is redelivered (after ``idle_timeout``, and only while
the stream sees new messages); a task that runs longer than ``idle_timeout`` would be
delivered twice, so a chunk task works for at most ``SLICE`` seconds and then re-kicks
itself. Neither a lost nor a duplicated delivery changes the outcome: leases fence
duplicates, and the supervisor re-kicks what was lost.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable
from typing import Any

import attrs

from ..client import PostmanClient
from ..errors import (
    AuthenticationError,
    IpNotAllowedError,
    PermissionDeniedError,
    RateLimiterUnavailableError,
)
from ..ratelimit_redis import RedisRateLimiter
from .config import CampaignConfig, WorkerConfig
from .records_local import LocalJobRecords
from .runner import ChunkStatus, JobHooks, run_chunk
from .store import JobCorruptError, JobError, JobLostError, JobSettings, JobStore

try:
    import redis.asyncio as aioredis
    from redis.asyncio import BlockingConnectionPool
    from redis.exceptions import RedisError
    from taskiq_redis import RedisStreamBroker
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('retry jobs need taskiq: pip install "postman-async[taskiq]"') from exc

logger = logging.getLogger("postman_async")
REDIS_URL = os.environ.get("POSTMAN_ASYNC_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = "postman_async:jobs"
#: Seconds a chunk task works before it re-kicks itself (far below ``IDLE_TIMEOUT``).
SLICE = 30.0
#: A delivery unacknowledged this long (ms) is taken for a dead worker's and redelivered.
IDLE_TIMEOUT = 120_000

try:
    BlockingConnectionPool.from_url(REDIS_URL)
except ValueError:  # malformed: the CLI and the worker refuse it (with the password masked)
    REDIS_URL = "redis://127.0.0.1:6379/0"

broker = RedisStreamBroker(
    REDIS_URL,
    queue_name=QUEUE,
    consumer_group_name="postman_async",
    # "0", not "$": chunks kicked before any worker ever started are still delivered.
    consumer_id="0",
    maxlen=100_000,
    idle_timeout=IDLE_TIMEOUT,
    # taskiq-redis#107/#131: without it, a worker killed holding the reclaim lock blocks
    # every later reclaim.
    unacknowledged_lock_timeout=10.0,
    xread_block=1000,
)


def configure(redis_url: str) -> None:
    """Point the broker (and this process's workers) at ``redis_url`` instead of the one from
    the environment. Call before kicking or serving."""
    global REDIS_URL
    REDIS_URL = redis_url
    broker.connection_pool = BlockingConnectionPool.from_url(redis_url)


@broker.task(task_name="postman_async.run_chunk")
async def run_chunk_task(job_id: str, chunk: int) -> str:
    """Run one slice of a chunk; re-kick it if there is more to do. Redis unreachable: one
    line, no traceback; the chunk's lease lapses and the supervisor re-kicks it."""
    try:
        status = await worker_context().run(job_id, chunk)
    except (RedisError, RateLimiterUnavailableError) as exc:
        logger.warning(
            "job %s chunk %d: Redis unavailable (%s); left for later", job_id, chunk, exc
        )
        return "redis_unavailable"
    if status == ChunkStatus.MORE:
        await run_chunk_task.kiq(job_id, chunk)
    return status.value


async def kick(job_id: str, chunk: int) -> None:
    """Deliver one chunk to the workers."""
    await run_chunk_task.kiq(job_id, chunk)


@attrs.define
class WorkerContext:
    """What one worker process shares across its tasks: Redis, its own campaigns' keys and
    base URLs, one client per campaign (each with the campaign's Redis limiter), its owner
    name and its failpoints. It remembers the unfinished jobs it has run, to tell when Redis
    loses one (:meth:`check_known`)."""

    redis: aioredis.Redis
    config: WorkerConfig
    hooks: JobHooks = attrs.field(factory=JobHooks)
    owner: str = attrs.field(
        factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )
    slice_seconds: float = SLICE
    #: job id -> (marker, creation in Redis ms) of the unfinished jobs this worker has run
    known: dict[str, tuple[str, int]] = attrs.field(factory=dict)
    #: this host's records of the jobs it ran, so that a restarted worker still tells a loss
    records: LocalJobRecords = attrs.field(
        default=attrs.Factory(lambda self: LocalJobRecords(self.redis), takes_self=True)
    )
    _clients: dict[tuple[str, float, float], PostmanClient] = attrs.field(factory=dict)
    _pacers: dict[str, RedisRateLimiter] = attrs.field(factory=dict)
    _told: set[tuple[str, str]] = attrs.field(factory=set)

    async def run(self, job_id: str, chunk: int) -> ChunkStatus:
        """Run one slice of ``chunk``, or refuse the job (a campaign or base URL this worker
        is not configured for), or tell that Redis lost it."""
        store = JobStore(self.redis, job_id, records=self.records)
        try:
            settings = await store.require_settings()
        except JobLostError as exc:
            self.known.pop(job_id, None)
            self._tell_once(job_id, "lost", str(exc))
            return ChunkStatus.LOST_DATA
        except JobCorruptError as exc:  # a record that does not parse: refused, no traceback
            await store.refuse(self.owner, f"its record in Redis is corrupt ({exc.detail})")
            self._tell_once(job_id, "refused", str(exc))
            return ChunkStatus.REFUSED
        except JobError as exc:
            if job_id in self.known and not await store.retired(self.known[job_id][0]):
                reason = "its keys vanished while it ran"
                return await self.lost(store, reason, self.known[job_id])
            logger.info("job %s: %s; task dropped", job_id, exc)
            return ChunkStatus.GONE
        refusal = self.config.refusal(settings.campaign_id, settings.base_url)
        if refusal is not None:
            await store.refuse(self.owner, refusal)
            self._tell_once(job_id, "refused", f"job {job_id} refused: {refusal}")
            return ChunkStatus.REFUSED
        previous = self.known.get(job_id)
        if previous and previous[0] != store.marker and settings.read_first_ms is None:
            await self._read_first_after(store, previous)  # before this slice's first POST
            settings = await store.require_settings()
        incarnation = self.known[job_id] = (store.marker, store.created_ms)
        self.records.remember(job_id, store.marker, store.created_ms)
        campaign = self.config.campaigns[settings.campaign_id]
        try:
            status = await run_chunk(
                store,
                self._client(campaign, settings),
                chunk,
                owner=self.owner,
                settings=settings,
                max_seconds=self.slice_seconds,
                hooks=self.hooks,
                pacer=self._pacer(job_id, settings, campaign),
            )
        except (AuthenticationError, PermissionDeniedError, IpNotAllowedError) as exc:
            # A key the server refuses will not work on the next slice either: record it in
            # the job, as a refusal, instead of looping.
            reason = f"the server refused this worker's key for campaign {campaign.campaign_id}"
            await store.refuse(self.owner, f"{reason} ({type(exc).__name__})")
            self._tell_once(job_id, "refused", f"job {job_id} refused: {reason}: {exc}")
            return ChunkStatus.REFUSED
        if status == ChunkStatus.LOST_DATA:
            # The incarnation this slice ran: the job may have been submitted again meanwhile
            # (and run here), and that one is not the one lost.
            reason = f"chunk {chunk} has fewer results than IDs submitted"
            await self.lost(store, reason, incarnation)
        return status

    async def lost(
        self, store: JobStore, reason: str, incarnation: tuple[str, int] | None = None
    ) -> ChunkStatus:
        """Record and tell (once) that Redis lost ``store``'s job: ``incarnation`` (marker,
        creation), or the last one this worker ran."""
        latest = self.known.get(store.job_id, ("", 0))
        marker, created_ms = incarnation or latest
        if (marker, created_ms) == latest:
            self.known.pop(store.job_id, None)
        marked = await store.mark_lost(
            reason=reason, created_ms=created_ms or None, by=self.owner, marker=marker
        )
        if marked:  # else it was already submitted again: the new job is not ours to mark
            self._tell_once(store.job_id, "lost", str(JobLostError(store.job_id, reason)))
        return ChunkStatus.LOST_DATA

    async def check_known(self) -> None:
        """For each unfinished job this worker has run: gone from Redis means lost (recorded
        and told); re-created after a loss without the read-first flag gets it."""
        for record in self.records.all():  # jobs run before a restart of this worker
            self.known.setdefault(record.job_id, (record.marker, record.created_ms))
        for job_id, (marker, created_ms) in list(self.known.items()):
            store = JobStore(self.redis, job_id)
            now_marker, finished, read_first = await self._redis.hmget(
                store.key("meta"), ["marker", "finished_ms", "read_first_ms"]
            )
            if now_marker is None and await store.retired(marker):  # ended, then expired
                self.known.pop(job_id, None)
                self.records.forget(job_id)
            elif now_marker is None:
                await self.lost(store, "its keys vanished while it ran", (marker, created_ms))
            elif finished is not None:
                self.known.pop(job_id, None)
                self.records.forget(job_id)
            elif now_marker.decode() != marker:
                self.known.pop(job_id, None)
                if read_first is None:
                    await self._read_first_after(store, (marker, created_ms))

    async def _read_first_after(self, store: JobStore, old: tuple[str, int]) -> None:
        """``store``'s job was created again since this worker ran its incarnation ``old``
        (marker, start). Unless ``old`` ended and expired, the job was submitted again after
        a loss nobody recorded: it reads each ID before any POST, from ``old``'s start (0,
        unknown: "outcome unknown" for IDs in failure, no POST and no guess)."""
        if not await store.retired(old[0]):
            await self._redis.hsetnx(store.key("meta"), "read_first_ms", old[1])

    @property
    def _redis(self) -> Any:
        """Typed loosely: redis-py's async return types are unions of sync and async."""
        return self.redis

    def _tell_once(self, job_id: str, what: str, text: str) -> None:
        if (job_id, what) not in self._told:
            self._told.add((job_id, what))
            logger.warning("%s", text)

    def _pacer(
        self, job_id: str, settings: JobSettings, campaign: CampaignConfig
    ) -> RedisRateLimiter | None:
        """The job's share of the campaign's rate, shared by its workers; one per job in
        this process, so what its margin learned outlives a slice."""
        if settings.budget_share >= 1:
            return None
        pacer = self._pacers.get(job_id)
        if pacer is None:
            key = f"{settings.campaign_id}.job.{job_id}"
            rate = campaign.rate_for(settings.rate) * settings.budget_share
            pacer = self._pacers[job_id] = _limiter(self.redis, key, rate)
        return pacer

    def _client(self, campaign: CampaignConfig, settings: JobSettings) -> PostmanClient:
        """The campaign's client: its key and base URL from this worker's configuration; the
        job's rate capped by the campaign's configured rate. One per (campaign, rate,
        timeout), so a job's settings never stick to the next job."""
        rate = campaign.rate_for(settings.rate)
        key = (campaign.campaign_id, rate, settings.http_timeout)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = PostmanClient(
                api_key=campaign.api_key,
                campaign_id=campaign.campaign_id,
                base_url=campaign.base_url,
                rate_limit=rate,
                timeout=settings.http_timeout,
                limiter=_limiter(self.redis, campaign.campaign_id, rate),
            )
        return client

    async def aclose(self) -> None:
        try:
            for client in self._clients.values():
                await client.aclose()
        finally:
            self._clients.clear()
            await self.redis.aclose()


def _limiter(redis: aioredis.Redis, campaign_id: str, rate: float) -> RedisRateLimiter:
    return RedisRateLimiter(redis, campaign_id=campaign_id, rate=rate)


_context: WorkerContext | None = None


def worker_context(config: WorkerConfig | None = None) -> WorkerContext:
    """This process's context, made on first use from ``config`` (default: the
    environment, :meth:`WorkerConfig.from_env`)."""
    global _context
    if _context is None:
        _context = WorkerContext(
            redis=aioredis.Redis.from_url(REDIS_URL),
            config=config or WorkerConfig.from_env(),
            hooks=failpoints(os.environ.get("POSTMAN_ASYNC_FAILPOINTS", "")),
        )
    return _context


def set_worker_context(context: WorkerContext | None) -> None:
    global _context
    _context = context


def failpoints(spec: str) -> JobHooks:
    """``before_intent=ID,after_intent=ID,before_post=ID,before_result=ID``: SIGKILL this
    process at that point for that message (``ID@stop``: SIGSTOP it, once)."""
    points = dict(part.split("=", 1) for part in spec.split(",") if "=" in part)

    def killer(point: str) -> Callable[[str], None] | None:
        target, _, action = points.get(point, "").partition("@")
        if not target:
            return None
        fired: list[bool] = []

        def kill(message_id: str) -> None:
            if message_id == target and not fired:
                fired.append(True)
                os.kill(os.getpid(), signal.SIGSTOP if action == "stop" else signal.SIGKILL)

        return kill

    return JobHooks(
        before_intent=killer("before_intent"),
        after_intent=killer("after_intent"),
        before_post=killer("before_post"),
        before_result=killer("before_result"),
    )
