"""The journal's Lua scripts, each rule on its own against a real redis-server: what the job
tests exercise through worker processes, pinned here so that a script that loses a rule
fails at once (tools/mutants.py plants these)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from postman_async import cli
from postman_async.jobs import JobCorruptError, JobLostError, JobSettings, JobStore
from postman_async.jobs.records_local import LocalJobRecords

SETTINGS = JobSettings(campaign_id="campaign_a", chunks=1, lease_ttl=5.0)


async def job(redis: aioredis.Redis, ids: list[str]) -> JobStore:
    store = JobStore(redis, "scripts")
    await store.create(SETTINGS)
    await store.submit(ids)
    return store


async def test_a_result_under_a_superseded_intent_is_refused(redis: aioredis.Redis) -> None:
    store = await job(redis, ["m1"])
    _, old_epoch, _ = await store.run("TAKE_LEASE", 0, "w1", 5000)
    at = await store.run("WRITE_INTENT", 0, old_epoch, "m1", "1|failure")
    stale_intent = f"{old_epoch}|{at}|1|failure"
    await redis.hdel(store.key("leases"), "0")  # the lease lapsed; a newer holder took it
    _, new_epoch, _ = await store.run("TAKE_LEASE", 0, "w2", 5000)
    assert await store.run("WRITE_INTENT", 0, old_epoch, "m1", "1|failure") == -1  # fenced
    assert await store.run("WRITE_INTENT", 0, new_epoch, "m1", "1|failure") > 0
    # The stale holder's result, compared with the intent it wrote: refused.
    assert await store.run("WRITE_RESULT", 0, "m1", stale_intent, "{}", "retried", 1) == -1
    assert (await store.progress()).done == 0


async def test_a_chunk_with_fewer_results_than_ids_is_not_done(redis: aioredis.Redis) -> None:
    store = await job(redis, ["m1", "m2", "m3"])
    _, epoch, _ = await store.run("TAKE_LEASE", 0, "w1", 5000)
    for message_id in ("m1", "m2", "m3"):
        assert await store.run("WRITE_RESULT", 0, message_id, "", "{}", "retried", 1) == 1
    await redis.hdel(store.key("c", 0, "res"), "m2")  # what an eviction would do
    assert await store.run("FINISH_CHUNK", 0, epoch) == -2
    await redis.hset(store.key("c", 0, "res"), "m2", "{}")
    assert await store.run("FINISH_CHUNK", 0, epoch) == 2  # done, and the job finished


async def test_a_job_is_not_created_over_a_lost_jobs_remnants(redis: aioredis.Redis) -> None:
    store = await job(redis, ["m1"])
    await redis.delete(store.key("meta"))  # the meta evicted; the counters survive
    assert await store.run("CREATE", "marker", "campaign_id", "campaign_a", "chunks", "1") == -1
    assert not await redis.exists(store.key("meta"))


async def test_a_lost_jobs_stale_holder_is_fenced_out_of_its_new_incarnation(
    redis: aioredis.Redis,
) -> None:
    """Redis lost the job; it is submitted again under the same ID. A worker of the lost
    incarnation still holds its lease in memory: its epoch must not be one the new
    incarnation hands out, or its intent (and so its POST) would pass the fence."""
    store = await job(redis, ["m1"])
    _, old_epoch, _ = await store.run("TAKE_LEASE", 0, "w1", 5000)
    async for key in redis.scan_iter(match=f"{store.prefix}:*"):
        await redis.delete(key)  # what FLUSHALL or a restart without AOF does to the job
    again = await job(redis, ["m1"])
    _, new_epoch, _ = await again.run("TAKE_LEASE", 0, "w2", 5000)
    assert new_epoch != old_epoch
    assert await again.run("WRITE_INTENT", 0, old_epoch, "m1", "1|failure") == -1  # fenced
    assert await again.run("WRITE_INTENT", 0, new_epoch, "m1", "1|failure") > 0


async def test_a_corrupt_record_is_a_typed_error_naming_it(redis: aioredis.Redis) -> None:
    store = await job(redis, ["m1"])
    await redis.hset(store.key("meta"), mapping={"rate": "nan"})
    with pytest.raises(JobCorruptError) as info:
        await store.settings()
    assert "rate" in info.value.detail and "job cancel scripts" in str(info.value)
    await redis.hset(store.key("meta"), mapping={"rate": "10"})
    await redis.hdel(store.key("meta"), "campaign_id")
    with pytest.raises(JobCorruptError) as info:
        await store.settings()
    assert info.value.detail == "no campaign_id"


def test_a_corrupt_job_can_still_be_cancelled(job_redis: Any) -> None:
    async def corrupt() -> None:
        redis = aioredis.Redis.from_url(job_redis.url)
        try:
            store = JobStore(redis, "corrupt-1")
            await store.create(SETTINGS)
            await redis.hset(store.key("meta"), mapping={"budget_share": "-3"})
        finally:
            await redis.aclose()

    asyncio.run(corrupt())
    assert cli.main(["job", "cancel", "corrupt-1", "--redis", job_redis.url]) == 0

    async def flag() -> Any:
        redis = aioredis.Redis.from_url(job_redis.url)
        try:
            return await redis.hget(JobStore(redis, "corrupt-1").key("meta"), "cancelled")
        finally:
            await redis.aclose()

    assert asyncio.run(flag()) == b"1"


async def test_a_late_loss_report_does_not_mark_the_job_submitted_again(
    redis: aioredis.Redis,
) -> None:
    """A worker tells of a lost incarnation after the job was submitted again under its ID:
    the new job is not marked lost (it would refuse to run: seen as a 409 in the FastAPI
    example), and the lost one is still marked when its meta is its own."""
    lost = await job(redis, ["m1"])
    await lost.settings()
    old_marker = lost.marker
    async for key in redis.scan_iter(match=f"{lost.prefix}:*"):
        await redis.delete(key)
    again = await job(redis, ["m1"])
    assert not await lost.mark_lost(reason="gone", created_ms=1, by="w1", marker=old_marker)
    assert await again.settings() is not None  # not lost
    await again.settings()
    assert await again.mark_lost(reason="gone", created_ms=2, by="w1", marker=again.marker)
    with pytest.raises(JobLostError):
        await again.settings()


async def test_a_lost_job_told_by_a_worker_without_its_start_starts_from_this_hosts_record(
    redis: aioredis.Redis, tmp_path: Path
) -> None:
    """Redis lost the job; a worker that never knew its start wrote the tombstone, and a
    stale worker's counter recreated ``count`` (no creation time in either). Submitted
    again, the job reads from the lost one's start as this host recorded it; a start of 0
    would take every attempt for the lost job's retry."""
    records = LocalJobRecords(redis, root=tmp_path)
    lost = JobStore(redis, "stale-counter", records=records)
    await lost.create(SETTINGS)
    started = lost.created_ms
    assert started > 0
    await redis.flushall()
    await redis.hincrby(lost.key("count"), "done", 1)  # a stale worker's result counter
    assert await lost.mark_lost(reason="gone", created_ms=None, by="w2", marker="")
    again = JobStore(redis, "stale-counter", records=records)
    assert (await again.create(SETTINGS)).read_first_ms == started


async def test_a_job_that_ended_and_expired_is_not_taken_for_lost_by_a_host_that_ran_it(
    redis: aioredis.Redis, tmp_path: Path
) -> None:
    """Host B (a worker stopped before it saw the job finish) still records the job when its
    report is taken elsewhere and its keys expire. Neither B's status nor a new job under the
    same ID (tomorrow's "nightly") is taken for a lost one: a lost job's read-first would
    count every attempt since the old start as "retried earlier" and retry nothing."""
    here = LocalJobRecords(redis, root=tmp_path / "a")
    there = LocalJobRecords(redis, root=tmp_path / "b")
    ended = JobStore(redis, "nightly", records=here)
    await ended.create(SETTINGS)
    there.remember("nightly", ended.marker, ended.created_ms)
    await ended.expire(0)  # the report was taken: every key goes
    assert await redis.keys(f"{ended.prefix}:*") == []
    tomorrow = JobStore(redis, "nightly", records=there)
    assert await tomorrow.settings() is None  # "no job", not "lost"
    assert (await tomorrow.create(SETTINGS)).read_first_ms is None
    assert await redis.exists(tomorrow.lost_key) == 0


async def test_a_slice_stuck_past_its_time_stops_renewing_its_lease(
    redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slice stuck in a call that never returns must not hold its chunk forever (a job
    stuck at "leased" after a Redis restart): its heartbeat stops at ``until``, so the lease
    lapses and another worker takes over (the stuck slice's intents are fenced)."""
    from postman_async.jobs.runner import _Lease

    store = await job(redis, ["m1"])
    _, epoch, _ = await store.run("TAKE_LEASE", 0, "w1", 3000)
    now = [0.0]
    beats: list[float] = []
    run = store.run

    async def sleep(delay: float) -> None:
        now[0] += delay

    async def counted(script: str, *args: Any) -> Any:
        if script == "HEARTBEAT":
            beats.append(now[0])
        return await run(script, *args)

    monkeypatch.setattr(store, "run", counted)
    lease = _Lease(store, 0, int(epoch), ttl=3.0)
    await asyncio.wait_for(lease.keep(sleep, lambda: now[0], until=10.0), 5)
    assert beats == [float(t) for t in range(1, 11)] and not lease.lost
