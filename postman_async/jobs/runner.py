"""Run one chunk of a retry job: engine-agnostic (a plain coroutine; the taskiq task is a thin
wrapper, and another engine can call it the same way).

Per ID: a token from the campaign's limiter -> a fenced, durable intent -> the POST, only
within ``window`` of the intent -> the result, written once with a compare-and-set on the
intent. A holder that lost its lease (its epoch moved on) starts no new POST: the intent
script refuses it. An intent left by a crashed holder is settled by one read after
``window + http_timeout`` (:mod:`postman_async.jobs.reconcile`) before anything is re-sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Callable

import attrs

from .. import telemetry
from .._executor import FATAL_ERRORS, Executor
from .._fanout import retry_one
from ..client import PostmanClient
from ..errors import NotFoundError, PostmanError
from ..models import Message, MessageStatus, Priority
from ..policy import CallMeter
from ..ratelimit import Clock, Limiter, Sleep
from ..reports import MessageResult, MessageState, Outcome
from .reconcile import Intent, decide_after_loss, reconcile
from .store import JobSettings, JobStore, encode_result

logger = logging.getLogger("postman_async")
#: IDs read from a chunk's pending set at a time.
READ_AHEAD = 32
#: Visits an ID may end in a transient error (network, 5xx) before that error is its result.
TRANSIENT_TRIES = 3
#: Pause after a transient error before the chunk's next slice.
TRANSIENT_PAUSE = 5.0


class ChunkStatus(str, enum.Enum):
    """How a :func:`run_chunk` call ended."""

    DONE = "done"  # every ID of the chunk has its result (the input is sealed)
    MORE = "more"  # the time slice ran out: run the chunk again
    WAITING = "waiting"  # nothing pending, but more input may come (not sealed)
    HELD = "held"  # another worker holds the lease
    LOST = "lost"  # the lease moved on while this run held it
    REFUSED = "refused"  # this worker is not configured for the job's campaign or base URL
    GONE = "gone"  # no such job (never created, or expired after its report)
    LOST_DATA = "lost_data"  # Redis lost some or all of the job's keys


class LeaseLost(Exception):
    """This worker's lease on the chunk ended: it must start no new POST."""


class _Skip(Exception):
    """The ID needs no POST from this holder (already done, or the window was missed)."""


class _TryLater(Exception):
    """A transient error: end this slice; the ID stays pending."""


class _Cancelled(Exception):
    """The job was cancelled before this ID's POST."""


@attrs.frozen
class JobHooks:
    """Fault-injection points (tests, chaos drills), called with the message ID: after its
    token and before its intent, right after the intent is durable, as its POST is about to
    be written (connection in hand), and right before its result is written."""

    before_intent: Callable[[str], None] | None = None
    after_intent: Callable[[str], None] | None = None
    before_post: Callable[[str], None] | None = None
    before_result: Callable[[str], None] | None = None


@attrs.define
class _Lease:
    store: JobStore
    chunk: int
    epoch: int
    ttl: float
    lost: bool = False

    async def keep(self, sleep: Sleep, clock: Clock, until: float) -> None:
        """Heartbeat at a third of the TTL while this runs, up to ``until``; flags ``lost``
        when fenced. A slice stuck past ``until`` (a call that never returns) lets the lease
        lapse: another worker takes the chunk over, and this slice's intents are fenced."""
        while not self.lost:
            await sleep(self.ttl / 3)
            if clock() > until:
                logger.warning(
                    "job %s chunk %d: the slice overran its time; letting its lease lapse",
                    self.store.job_id,
                    self.chunk,
                )
                return
            try:
                ok = await self.store.run("HEARTBEAT", self.chunk, self.epoch, int(self.ttl * 1000))
            except Exception as exc:  # Redis down: the lease may lapse; intents stay fenced
                logger.warning(
                    "job %s chunk %d heartbeat failed: %s", self.store.job_id, self.chunk, exc
                )
                continue
            if not ok:
                self.lost = True


async def run_chunk(
    store: JobStore,
    client: PostmanClient,
    chunk: int,
    *,
    owner: str,
    settings: JobSettings | None = None,
    max_seconds: float = 30.0,
    hooks: JobHooks = JobHooks(),
    pacer: Limiter | None = None,
    clock: Clock = time.monotonic,
    sleep: Sleep = asyncio.sleep,
) -> ChunkStatus:
    """Hold ``chunk``'s lease for up to ``max_seconds`` and work through its pending IDs."""
    settings = settings or await store.require_settings()
    taken, epoch, _ = await store.run("TAKE_LEASE", chunk, owner, int(settings.lease_ttl * 1000))
    if not taken:
        return ChunkStatus.HELD
    lease = _Lease(store, chunk, int(epoch), settings.lease_ttl)
    run = _ChunkRun(store, client, settings, lease, hooks, _executor(client, pacer, clock, sleep))
    deadline = clock() + max_seconds
    # The slice checks its deadline between IDs; one ID may take a settle wait and a POST
    # with its re-sends past it. Beyond that, the slice is stuck.
    overrun = settings.window + 4 * settings.http_timeout + settings.lease_ttl
    keeper = asyncio.ensure_future(lease.keep(sleep, clock, deadline + overrun))
    status = ChunkStatus.LOST
    try:
        status = await run.work(deadline, clock)
        return status
    except LeaseLost:
        return ChunkStatus.LOST
    except _TryLater as exc:
        logger.warning("job %s chunk %d: %s; trying again later", store.job_id, chunk, exc)
        await store.redis.hset(store.key("meta"), "last_error", str(exc))
        await sleep(TRANSIENT_PAUSE)
        status = ChunkStatus.MORE
        return status
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        if status == ChunkStatus.LOST:
            logger.info(
                "job %s chunk %d: fenced out (the lease moved on to a newer holder); no new POST",
                store.job_id,
                chunk,
            )
        elif status != ChunkStatus.DONE:
            with contextlib.suppress(Exception):
                await store.run("RELEASE_LEASE", chunk, lease.epoch)


def _executor(client: PostmanClient, pacer: Limiter | None, clock: Clock, sleep: Sleep) -> Executor:
    """One ID at a time, the results to Redis (no messages kept), in the BULK lane."""
    return Executor.for_client(
        client, concurrency=1, keep_messages=False, clock=clock, sleep=sleep, pacer=pacer
    )


@attrs.define
class _ChunkRun:
    store: JobStore
    client: PostmanClient
    settings: JobSettings
    lease: _Lease
    hooks: JobHooks
    ex: Executor

    @property
    def chunk(self) -> int:
        return self.lease.chunk

    async def work(self, deadline: float, clock: Clock) -> ChunkStatus:
        redis, key = self.store.redis, self.store.key
        while clock() < deadline:
            if self.lease.lost:
                return ChunkStatus.LOST
            ids = await redis.zrange(key("c", self.chunk, "todo"), 0, READ_AHEAD - 1)
            if not ids:
                return await self._finish()
            async with redis.pipeline(transaction=False) as pipe:
                pipe.hmget(key("c", self.chunk, "base"), ids)
                pipe.hmget(key("c", self.chunk, "intent"), ids)
                pipe.hget(key("meta"), "cancelled")
                bases, intents, cancelled = await pipe.execute()
            for raw_id, base, intent in zip(ids, bases, intents, strict=True):
                if self.lease.lost or clock() >= deadline:
                    break
                await self._one(
                    raw_id.decode(),
                    base.decode() if base else "",
                    intent.decode() if intent else None,
                    cancelled == b"1",
                )
        return ChunkStatus.LOST if self.lease.lost else ChunkStatus.MORE

    async def _finish(self) -> ChunkStatus:
        done = await self.store.run("FINISH_CHUNK", self.chunk, self.lease.epoch)
        if done == -1:
            return ChunkStatus.LOST
        if done == -2:
            return ChunkStatus.LOST_DATA
        return ChunkStatus.DONE if done > 0 else ChunkStatus.WAITING

    async def _one(
        self, message_id: str, base: str, intent_raw: str | None, cancelled: bool
    ) -> None:
        """One ID, its calls counted by a meter of its own."""
        meter = CallMeter()
        view = self.client.with_options(meter=meter)
        run = attrs.evolve(self, client=view, ex=attrs.evolve(self.ex, client=view))
        await run._one_metered(message_id, base, intent_raw, cancelled, meter)

    async def _one_metered(
        self, message_id: str, base: str, intent_raw: str | None, cancelled: bool, meter: CallMeter
    ) -> None:
        expected = intent_raw or ""
        if intent_raw is not None:
            verdict = await self._settle(message_id, Intent.parse(intent_raw))
            if verdict is not None:
                await self._record(verdict, expected, meter.calls)
                return
        if cancelled:
            await self._record(_cancelled(message_id), expected, meter.calls)
            return
        known = _known(message_id, base)
        if self.settings.read_first_ms is not None:
            decided = await self._read_first(message_id, known, self.settings.read_first_ms)
            if isinstance(decided, MessageResult):
                await self._record(decided, expected, meter.calls)
                return
            known = decided
        written: list[str] = []
        intent_started = [0.0]

        async def write_intent() -> None:
            raw, intent_started[0] = await self._write_intent(message_id, base)
            written.append(raw)

        def gate() -> None:  # the last moment before the POST's bytes go out
            if self.hooks.before_post is not None:
                self.hooks.before_post(message_id)
            if not self._within_window(intent_started[0]):
                raise _Skip

        posting = self.client.with_options(before_post=write_intent, post_gate=gate)
        try:
            result = await retry_one(
                attrs.evolve(self.ex, client=posting), message_id, message_id, known
            )
        except _Skip:
            return
        except _Cancelled:
            result = _cancelled(message_id)
        transient = result.outcome == Outcome.ERROR and result.worth_another_run
        if transient and await self._try_later(message_id):
            raise _TryLater(str(result.detail))
        await self._record(result, written[-1] if written else expected, meter.calls)

    async def _try_later(self, message_id: str) -> bool:
        """A transient error: leave the ID pending (its intent, if any, makes the next visit
        read before any re-send), up to ``TRANSIENT_TRIES`` times; then record the error."""
        tries = await self.store.redis.hincrby(self.store.key("c", self.chunk, "tries"), message_id)
        return int(tries) < TRANSIENT_TRIES

    async def _write_intent(self, message_id: str, base: str) -> tuple[str, float]:
        """Write the fenced intent; returns it and when its write began (the window's start)."""
        if self.hooks.before_intent is not None:
            self.hooks.before_intent(message_id)
        started = time.monotonic()
        at = await self.store.run("WRITE_INTENT", self.chunk, self.lease.epoch, message_id, base)
        if at == -1:
            self.lease.lost = True
            raise LeaseLost(f"chunk {self.chunk}: lease epoch {self.lease.epoch} ended")
        if at == -2:
            raise _Skip
        if at == -3:
            raise _Cancelled
        if self.hooks.after_intent is not None:
            self.hooks.after_intent(message_id)
        if not self._within_window(started):
            # Too late to POST under this intent (a stalled process): leave it for the
            # reconcile path, which waits out the window and reads before any re-send.
            raise _Skip
        return f"{self.lease.epoch}|{at}|{base}", started

    def _within_window(self, started: float) -> bool:
        """Whether a POST may still go out under the intent written at ``started``."""
        return time.monotonic() - started <= self.settings.window

    async def _settle(self, message_id: str, intent: Intent) -> MessageResult | None:
        """A previous holder's intent: wait until its POST is certainly over, then read."""
        settled = intent.settled_at_ms(self.settings.window, self.settings.http_timeout)
        logger.info(
            "job %s chunk %d: taking over %s from a holder that stopped; reading it once its "
            "POST is settled",
            self.store.job_id,
            self.chunk,
            message_id,
        )
        while (now := await _redis_ms(self.store)) < settled:
            if self.lease.lost:
                raise LeaseLost(f"chunk {self.chunk}: lease lost while settling {message_id}")
            await self.ex.sleep(min(self.settings.lease_ttl / 3, (settled - now) / 1000))
        await self.ex.pace()
        try:
            message, date = await self.client.get_message_dated(message_id, priority=Priority.BULK)
        except NotFoundError:
            message, date = None, None
        except FATAL_ERRORS:
            raise
        except PostmanError as exc:  # the read failed: the intent stays, read again later
            raise _TryLater(
                f"reading {message_id} to settle a crashed holder's POST: {exc}"
            ) from exc
        since = (await _redis_ms(self.store) - intent.at_ms) / 1000
        verdict = reconcile(
            message_id, intent, message, server_date=date, seconds_since_intent=since
        )
        return verdict.result

    async def _read_first(
        self, message_id: str, known: MessageState | None, since_ms: int
    ) -> MessageResult | MessageState:
        """A job submitted again after Redis lost it: read the ID before any POST. The read
        waits until a POST the lost job had in flight is certainly processed or dropped: one
        goes out within ``window`` of its intent, before this job was created, and is over
        ``http_timeout`` later."""
        settle_s = self.settings.window + self.settings.http_timeout
        settled = self.store.created_ms + int(settle_s * 1000)
        while (now := await _redis_ms(self.store)) < settled:
            if self.lease.lost:
                raise LeaseLost(f"chunk {self.chunk}: lease lost before reading {message_id}")
            await self.ex.sleep(min(self.settings.lease_ttl / 3, (settled - now) / 1000))
        await self.ex.pace()
        try:
            message: Message | None = await self.client.get_message(
                message_id, priority=Priority.BULK
            )
        except NotFoundError:
            message = None
        except FATAL_ERRORS:
            raise
        except PostmanError as exc:
            raise _TryLater(f"reading {message_id} before its retry: {exc}") from exc
        return decide_after_loss(message_id, message, since_ms=since_ms, known=known)

    async def _record(self, result: MessageResult, expected: str, calls: int) -> None:
        if self.hooks.before_result is not None:
            self.hooks.before_result(result.message_id)
        written = await self.store.run(
            "WRITE_RESULT",
            self.chunk,
            result.message_id,
            expected,
            encode_result(result),
            result.outcome.value,
            calls,
        )
        if written == 1:
            telemetry.add("job_results", 1, **{"postman.outcome": result.outcome.value})
        if written == -1:
            logger.info(
                "job %s: %s was taken over by a newer holder", self.store.job_id, result.message_id
            )


def _known(message_id: str, base: str) -> MessageState | None:
    if not base:
        return None
    attempts, status = [*base.split("|"), ""][:2]
    return MessageState(message_id, MessageStatus(status) if status else None, int(attempts))


def _cancelled(message_id: str) -> MessageResult:
    return MessageResult(
        message_id, Outcome.CANCELLED, "not retried: the job was cancelled", applied=False
    )


async def _redis_ms(store: JobStore) -> int:
    seconds, micros = await store.redis.time()
    return int(seconds) * 1000 + int(micros) // 1000
