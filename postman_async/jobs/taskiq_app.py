"""The taskiq wiring: a Redis Stream broker and one thin task per chunk.

Workers: ``postman-async job worker`` (or ``taskiq worker postman_async.jobs.taskiq_app:broker``).
Settings come from the environment, so every worker host is configured the same way:

- ``POSTMAN_ASYNC_REDIS_URL``: the Redis that holds the broker's stream, the jobs and the
  campaign's shared limiter (default ``redis://127.0.0.1:6379/0``);
- ``POSTMAN_API_KEY`` or ``POSTMAN_API_KEY_FILE``: the campaign's key (never stored in Redis);
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

import os
import signal
import socket
import uuid
from collections.abc import Callable

import attrs

from ..client import PostmanClient
from ..ratelimit_redis import RedisRateLimiter
from .runner import ChunkStatus, JobHooks, run_chunk
from .store import JobSettings, JobStore

try:
    import redis.asyncio as aioredis
    from redis.asyncio import BlockingConnectionPool
    from taskiq_redis import RedisStreamBroker
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('retry jobs need taskiq: pip install "postman-async[taskiq]"') from exc

REDIS_URL = os.environ.get("POSTMAN_ASYNC_REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = "postman_async:jobs"
#: Seconds a chunk task works before it re-kicks itself (far below ``IDLE_TIMEOUT``).
SLICE = 30.0
#: A delivery unacknowledged this long (ms) is taken for a dead worker's and redelivered.
IDLE_TIMEOUT = 120_000

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
    """Run one slice of a chunk; re-kick it if there is more to do."""
    status = await worker_context().run(job_id, chunk)
    if status == ChunkStatus.MORE:
        await run_chunk_task.kiq(job_id, chunk)
    return status.value


async def kick(job_id: str, chunk: int) -> None:
    """Deliver one chunk to the workers."""
    await run_chunk_task.kiq(job_id, chunk)


@attrs.define
class WorkerContext:
    """What one worker process shares across its tasks: Redis, one client per campaign (each
    with the campaign's Redis limiter), its owner name and its failpoints."""

    redis: aioredis.Redis
    api_key: str
    hooks: JobHooks = attrs.field(factory=JobHooks)
    owner: str = attrs.field(
        factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    )
    slice_seconds: float = SLICE
    _clients: dict[tuple[str, str], PostmanClient] = attrs.field(factory=dict)
    _pacers: dict[str, RedisRateLimiter] = attrs.field(factory=dict)

    async def run(self, job_id: str, chunk: int) -> ChunkStatus:
        store = JobStore(self.redis, job_id)
        settings = await store.require_settings()
        client = self._client(settings)
        return await run_chunk(
            store,
            client,
            chunk,
            owner=self.owner,
            settings=settings,
            max_seconds=self.slice_seconds,
            hooks=self.hooks,
            pacer=self._pacer(job_id, settings),
        )

    def _pacer(self, job_id: str, settings: JobSettings) -> RedisRateLimiter | None:
        """The job's share of the campaign's rate, shared by its workers; one per job in
        this process, so what its margin learned outlives a slice."""
        if settings.budget_share >= 1:
            return None
        pacer = self._pacers.get(job_id)
        if pacer is None:
            key = f"{settings.campaign_id}.job.{job_id}"
            pacer = self._pacers[job_id] = _limiter(
                self.redis, key, settings.rate * settings.budget_share
            )
        return pacer

    def _client(self, settings: JobSettings) -> PostmanClient:
        key = (settings.base_url, settings.campaign_id)
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = PostmanClient(
                api_key=self.api_key,
                campaign_id=settings.campaign_id,
                base_url=settings.base_url,
                rate_limit=settings.rate,
                timeout=settings.http_timeout,
                limiter=_limiter(self.redis, settings.campaign_id, settings.rate),
            )
        return client

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()
        await self.redis.aclose()


def _limiter(redis: aioredis.Redis, campaign_id: str, rate: float) -> RedisRateLimiter:
    return RedisRateLimiter(redis, campaign_id=campaign_id, rate=rate)


_context: WorkerContext | None = None


def worker_context() -> WorkerContext:
    """This process's context, made from the environment on first use."""
    global _context
    if _context is None:
        _context = WorkerContext(
            redis=aioredis.Redis.from_url(REDIS_URL),
            api_key=api_key_from_env(),
            hooks=failpoints(os.environ.get("POSTMAN_ASYNC_FAILPOINTS", "")),
        )
    return _context


def set_worker_context(context: WorkerContext | None) -> None:
    global _context
    _context = context


def api_key_from_env() -> str:
    path = os.environ.get("POSTMAN_API_KEY_FILE")
    if path:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    key = os.environ.get("POSTMAN_API_KEY")
    if not key:
        raise RuntimeError("set POSTMAN_API_KEY or POSTMAN_API_KEY_FILE for the job workers")
    return key


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
