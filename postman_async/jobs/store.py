"""A retry job's durable state in Redis: its input, leases, journal, results and counters.

Layout (one hash tag per job, so it also fits one Redis Cluster slot), under
``<namespace>:{<job_id>}``:

- ``meta`` (settings, ``position`` of the input consumed, ``sealed``, ``cancelled``,
  ``finished_ms``) and ``count`` (submitted, distinct, duplicates, done, calls, one counter
  per outcome): progress reads these in O(1);
- per chunk ``c:<n>:todo`` (pending IDs), ``c:<n>:base`` (known attempt baselines),
  ``c:<n>:intent`` (the journal: a POST about to go out) and ``c:<n>:res`` (one result per ID);
- ``leases`` (chunk -> ``epoch|until_ms|owner``), ``epoch``, ``chunks_done``, ``cdist`` (distinct
  IDs per chunk, to tell a chunk whose keys Redis lost), ``refused`` (worker -> why it refused
  the job).

A job's ``marker`` and creation time are kept in ``meta`` and ``count``. A job whose keys Redis
lost (a restart without AOF, an eviction, a flush) is told apart from one never created: by
what is left of it, or by the tombstone ``<namespace>:lost:{<job_id>}`` that a worker which
saw the job writes when it finds the job gone (:meth:`JobStore.mark_lost`).

An ID lives in exactly one chunk (by CRC-32 of the ID), so duplicates always meet there and
get one result.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

import attrs

from .._executor import aiter_any
from .._files import open_private
from ..errors import ValidationError
from ..reports import MessageResult, MessageState, Outcome
from ..validation import validate_id
from . import _lua
from .records import (
    LOST_MESSAGE,
    JobCorruptError,
    JobError,
    JobLostError,
    JobProgress,
    JobSettings,
)
from .records_local import LocalJobRecords

__all__ = [
    "LOST_MESSAGE",
    "JobCorruptError",
    "JobError",
    "JobLostError",
    "JobProgress",
    "JobSettings",
    "JobStore",
    "active_jobs",
]

try:
    import redis.asyncio as aioredis
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('retry jobs need redis-py: pip install "postman-async[taskiq]"') from exc

NAMESPACE = "postman_async:job"
SUBMIT_BATCH = 500
#: Seconds a lost job's tombstone is kept.
LOST_TTL = 30 * 86400
#: IDs longer than this are stored by a digest (an invalid ID must not fill Redis).
MAX_KEY = 256


def chunk_of(key: str, chunks: int) -> int:
    """The chunk an ID belongs to: stable across processes (unlike ``hash()``)."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % chunks


def id_key(raw: object) -> str:
    """The key an input item is stored under: itself for a string, else its repr; a very
    long one by a digest."""
    key = raw if isinstance(raw, str) else repr(raw)
    if len(key) > MAX_KEY:
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        key = f"{key[:64]}...sha256:{digest}"
    return key


def encode_result(result: MessageResult) -> str:
    return json.dumps(result.to_dict(), separators=(",", ":"))


def baseline_of(state: MessageState | None) -> str:
    if state is None or state.attempts is None:
        return ""
    return f"{state.attempts}|{state.status.value if state.status else ''}"


class JobStore:
    """One job's Redis state. ``redis``: a ``redis.asyncio.Redis`` (decode_responses off)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        job_id: str,
        *,
        namespace: str = NAMESPACE,
        records: LocalJobRecords | None = None,
    ) -> None:
        #: typed loosely: redis-py's async return types are unions of sync and async
        self.redis: Any = redis
        self.job_id = validate_id("job_id", job_id)
        self.namespace = namespace
        self.prefix = f"{namespace}:{{{job_id}}}"
        #: this host's records of the jobs it submitted or ran (to tell a job Redis lost whole)
        self.records = records
        #: the job's marker and creation time (Redis ms), as last read by :meth:`settings`
        self.marker = ""
        self.created_ms = 0
        self.active_key = f"{namespace}:active"
        self._scripts = {
            name: redis.register_script(getattr(_lua, name))
            for name in (
                "CREATE",
                "SUBMIT",
                "TAKE_LEASE",
                "HEARTBEAT",
                "RELEASE_LEASE",
                "WRITE_INTENT",
                "WRITE_RESULT",
                "FINISH_CHUNK",
                "CLAIM_STALLED",
                "LEASE_COUNT",
                "MARK_LOST",
            )
        }

    def key(self, *parts: object) -> str:
        """The Redis key of one part of this job (``key("c", 3, "res")``)."""
        return ":".join([self.prefix, *map(str, parts)])

    async def run(self, script: str, *args: str | int | float) -> Any:
        """Run one of the journal's Lua scripts (:mod:`postman_async.jobs._lua`) on this job."""
        return await self._scripts[script](keys=[self.prefix], args=list(args))

    # -- creating and feeding -------------------------------------------------------------

    async def create(self, settings: JobSettings) -> JobSettings:
        """Create the job, or return the stored settings if it exists with the same campaign
        and chunking (submitting again is idempotent). A job whose data Redis lost is created
        anew with ``read_first_ms`` set to the lost job's creation, so that its workers read
        each ID before any POST."""
        lost_since = await self._lost_since()
        if lost_since is not None:
            await self._purge()
            settings = attrs.evolve(settings, read_first_ms=lost_since)
        fields = {k: str(v) for k, v in attrs.asdict(settings).items() if v is not None}
        marker = secrets.token_hex(8)
        created = await self.run("CREATE", marker, *(x for pair in fields.items() for x in pair))
        if created == -1:  # remnants appeared between the check and the script: a loss
            raise JobLostError(self.job_id, "submit again to start it anew")
        await self.redis.sadd(self.active_key, self.job_id)
        if lost_since is not None:
            await self.redis.delete(self.lost_key)
        stored = await self.require_settings()
        if self.records is not None:
            self.records.remember(self.job_id, self.marker, self.created_ms)
        if (stored.campaign_id, stored.chunks) != (settings.campaign_id, settings.chunks):
            raise JobError(
                f"job {self.job_id} exists for campaign {stored.campaign_id} with "
                f"{stored.chunks} chunks; pick another job id"
            )
        return stored

    async def _lost_since(self) -> int | None:
        """The creation time (Redis ms; 0 if unknown) of this job if Redis lost its data (a
        tombstone, remnants without a meta, or a meta marked lost); None if not lost."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.lost_key)
            pipe.hmget(self.key("meta"), ["chunks", "lost", "created_ms"])
            pipe.hget(self.key("count"), "created_ms")
            tomb, (chunks, lost, meta_ms), count_ms = await pipe.execute()
        if chunks is not None and lost is None:
            return None
        record = self.records.get(self.job_id) if self.records is not None else None
        if chunks is None and not tomb and count_ms is None:
            # Never created, or expired; or Redis lost everything and this host remembers it.
            if record is None or await self.retired(record.marker):
                return None
            return record.created_ms
        known_ms = tomb.get(b"created_ms") or meta_ms or count_ms
        # Remnants (a stale worker's counter) may name no creation; this host's record may.
        return int(known_ms or (record.created_ms if record is not None else 0))

    async def _purge(self) -> None:
        """Delete what is left of a lost job (its keys cannot be trusted)."""
        async for key in self.redis.scan_iter(match=f"{_glob_escape(self.prefix)}:*", count=500):
            await self.redis.delete(key)

    @property
    def lost_key(self) -> str:
        """The job's tombstone: written when a worker finds the job's data gone."""
        return f"{self.namespace}:lost:{{{self.job_id}}}"

    async def mark_lost(self, *, reason: str, created_ms: int | None, by: str, marker: str) -> bool:
        """Record that Redis lost this job's data (kept 30 days, apart from the job's keys,
        so that ``job status`` tells it and a re-submission reads before it POSTs). ``marker``
        names the lost incarnation: a job already submitted again under the same ID is not
        marked (False)."""
        args: list[str | int] = [reason, by, "" if created_ms is None else str(created_ms)]
        args += [LOST_TTL, marker]
        done = await self._scripts["MARK_LOST"](keys=[self.prefix, self.lost_key], args=args)
        return bool(done)

    async def refuse(self, worker: str, reason: str) -> None:
        """Record that ``worker`` refused the job (``job status`` shows it)."""
        await self.redis.hset(self.key("refused"), worker, reason)

    async def settings(self) -> JobSettings | None:
        """The stored settings, or None for a job never created (or expired). Raises
        :class:`JobLostError` for a job whose data Redis lost."""
        raw = await self.redis.hgetall(self.key("meta"))
        meta = {k.decode(): v.decode() for k, v in raw.items()}
        if "chunks" not in meta:
            if await self._lost_since() is not None:
                raise JobLostError(self.job_id, await self._lost_detail())
            return None
        if "lost" in meta:
            raise JobLostError(self.job_id, meta["lost"])
        self.marker = meta.get("marker", "")
        self.created_ms = int(meta.get("created_ms") or 0)
        try:
            return JobSettings(
                campaign_id=meta["campaign_id"],
                base_url=meta.get("base_url") or None,
                chunks=int(meta["chunks"]),
                rate=float(meta["rate"]),
                budget_share=float(meta["budget_share"]),
                window=float(meta["window"]),
                http_timeout=float(meta["http_timeout"]),
                lease_ttl=float(meta["lease_ttl"]),
                read_first_ms=int(meta["read_first_ms"]) if meta.get("read_first_ms") else None,
            )
        except KeyError as exc:
            raise JobCorruptError(self.job_id, f"no {exc.args[0]}") from None
        except (ValueError, ValidationError) as exc:
            raise JobCorruptError(self.job_id, str(exc)) from None

    async def _lost_detail(self) -> str:
        tomb = await self.redis.hgetall(self.lost_key)
        reason = tomb.get(b"reason")
        if reason:
            return str(reason.decode())
        if await self.redis.exists(self.key("count")):
            return "what is left of it has no settings"
        return "Redis has no trace of it, but this host submitted or ran it"

    async def require_settings(self) -> JobSettings:
        """The stored settings. Raises :class:`JobError` for an unknown job and
        :class:`JobLostError` for one whose data Redis lost."""
        settings = await self.settings()
        if settings is None:
            raise JobError(f"no job {self.job_id!r} (never created, or expired)")
        return settings

    async def submit(
        self,
        items: Iterable[object] | AsyncIterable[object],
        *,
        known: dict[str, MessageState] | None = None,
        seal: bool = True,
    ) -> int:
        """Stream ``items`` (IDs, or :class:`MessageState` with a known attempt count) into
        the job, ``SUBMIT_BATCH`` at a time. Re-running a producer over the same input is
        idempotent: the input consumed so far (``position``) is skipped. Returns the
        position reached. ``seal``: mark the input complete afterwards."""
        settings = await self.require_settings()
        position = int(await self.redis.hget(self.key("meta"), "position") or 0)
        seen = 0
        batch: list[str] = []
        async for item in aiter_any(items):
            seen += 1
            if seen <= position:
                continue
            state = item if isinstance(item, MessageState) else None
            raw = state.message_id if state else item
            key = id_key(raw)
            state = state or (known or {}).get(key)
            batch += [str(chunk_of(key, settings.chunks)), key, baseline_of(state), _invalid(raw)]
            if len(batch) >= 4 * SUBMIT_BATCH:
                position = await self._submit_batch(position, batch)
                batch = []
        if batch:
            position = await self._submit_batch(position, batch)
        if seal:
            await self.seal()
        return position

    async def _submit_batch(self, position: int, batch: list[str]) -> int:
        new_position = position + len(batch) // 4
        status, at = await self.run("SUBMIT", position, new_position, *batch)
        if status == -1:
            raise JobError(f"job {self.job_id}: another producer is feeding it (at {at})")
        if status == -2:
            raise JobError(f"job {self.job_id} is sealed: its input is complete")
        return int(at)

    async def seal(self) -> None:
        """Mark the input complete: chunks can now finish."""
        await self.redis.hset(self.key("meta"), "sealed", "1")

    async def cancel(self) -> None:
        """Stop the job: no new POST starts; pending IDs get a ``cancelled`` result."""
        await self.redis.hset(self.key("meta"), "cancelled", "1")

    # -- reading --------------------------------------------------------------------------

    async def progress(self) -> JobProgress:
        """The job's progress, from counters (O(1) in the number of IDs). Raises
        :class:`JobError` for an unknown job."""
        settings = await self.require_settings()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.key("count"))
            pipe.hmget(self.key("meta"), ["sealed", "cancelled", "finished_ms", "created_ms"])
            pipe.scard(self.key("chunks_done"))
            pipe.hgetall(self.key("refused"))
            counts_raw, flags, chunks_done, refused = await pipe.execute()
        now_ms, leased = await self.run("LEASE_COUNT")
        counts = {
            k.decode(): int(v) for k, v in counts_raw.items() if k not in (b"created_ms", b"marker")
        }
        return JobProgress(
            job_id=self.job_id,
            distinct=counts.get("distinct", 0),
            done=counts.get("done", 0),
            duplicates=counts.get("duplicates", 0),
            submitted=counts.get("submitted", 0),
            calls=counts.get("calls", 0),
            counts={
                k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("outcome:")
            },
            refusals={k.decode(): v.decode() for k, v in refused.items()},
            chunks=settings.chunks,
            chunks_done=int(chunks_done),
            chunks_leased=int(leased),
            sealed=flags[0] == b"1",
            cancelled=flags[1] == b"1",
            finished=flags[2] is not None,
            elapsed=(int(flags[2] or now_ms) - int(flags[3] or now_ms)) / 1000,
            rate=settings.rate,
            budget_share=settings.budget_share,
        )

    async def results(self) -> AsyncIterator[dict[str, Any]]:
        """Every result written so far, chunk by chunk (streamed with HSCAN)."""
        settings = await self.require_settings()
        for chunk in range(settings.chunks):
            async for _key, value in self.redis.hscan_iter(self.key("c", chunk, "res")):
                yield json.loads(value)

    async def write_ndjson(self, path: str) -> int:
        """The results as NDJSON (one object per line); returns how many were written."""
        count = 0
        with open_private(path) as handle:
            async for result in self.results():
                handle.write(json.dumps(result, separators=(",", ":")) + "\n")
                count += 1
        return count

    async def write_report_json(self, path: str) -> int:
        """The results in :class:`~postman_async.RetryReport`'s JSON shape, streamed."""
        progress = await self.progress()
        summary = {
            "messages": progress.done,
            "counts": {o.value: progress.counts.get(o.value, 0) for o in Outcome},
            "duplicates": progress.duplicates,
            "calls": progress.calls,
            "elapsedSeconds": round(progress.elapsed, 3),
            "finished": progress.finished,
            "jobId": self.job_id,
        }
        count = 0
        with open_private(path) as handle:
            handle.write('{"summary": ' + json.dumps(summary) + ', "results": [\n')
            async for result in self.results():
                handle.write((",\n" if count else "") + json.dumps(result))
                count += 1
            handle.write("\n]}\n")
        return count

    @property
    def retired_key(self) -> str:
        """The marker of the job's last incarnation let expire after its report was taken:
        a host or worker that remembers that incarnation knows it ended, not lost."""
        return f"{self.namespace}:retired:{{{self.job_id}}}"

    async def retired(self, marker: str) -> bool:
        """Whether the incarnation ``marker`` finished and was let expire (not lost)."""
        return bool(marker) and await self.redis.get(self.retired_key) == marker.encode()

    async def expire(self, seconds: float) -> None:
        """Let every key of the job expire in ``seconds`` (after its report was taken)."""
        ms = int(seconds * 1000)
        marker = await self.redis.hget(self.key("meta"), "marker")
        if marker is not None:  # kept as long as a tombstone: see :meth:`retired`
            await self.redis.set(self.retired_key, marker, ex=LOST_TTL)
        # First, so that keys expiring a moment apart never look like a lost job's remnants.
        await self.redis.hdel(self.key("count"), "created_ms", "marker")
        async for key in self.redis.scan_iter(match=f"{_glob_escape(self.prefix)}:*", count=500):
            await self.redis.pexpire(key, ms)
        await self.redis.srem(self.active_key, self.job_id)


async def active_jobs(redis: aioredis.Redis, namespace: str = NAMESPACE) -> list[str]:
    """Jobs created and not yet expired (what supervisors watch)."""
    members: Any = await redis.smembers(f"{namespace}:active")
    return sorted(m.decode() if isinstance(m, bytes) else m for m in members)


def _invalid(raw: object) -> str:
    try:
        validate_id("message_id", raw)
    except ValidationError as exc:
        return encode_result(MessageResult(id_key(raw), Outcome.ERROR, str(exc), error=exc))
    return ""


def _glob_escape(text: str) -> str:
    return "".join(f"\\{ch}" if ch in "*?[]\\" else ch for ch in text)
