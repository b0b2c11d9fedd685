"""Redis loses a job's data mid-job (a restart without AOF, a FLUSHALL, an eviction): the
operator is told "lost" with its own exit code, the workers log it once without a traceback,
and submitting the job again sends no message a second retry POST (the simulator's record of
every POST it processed)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from postman_async.jobs import LOST_MESSAGE, JobStore, submit_job, taskiq_app
from postman_async.jobs.config import CampaignConfig, WorkerConfig
from postman_async.jobs.runner import ChunkStatus

from ..helpers import wait_for_condition
from ..redis_server import RedisServer
from .harness import (
    Sim,
    Workers,
    assert_against_ground_truth,
    restart_redis,
    results_by_id,
    wait_finished,
)

EXIT_LOST = 9
#: The jobs' HTTP timeout (the simulator answers at once).
HTTP_TIMEOUT = 2.0


def cli(redis_url: str, *args: str, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``postman-async job ...``; ``cache``: another host's cache (none of this one's job
    records), so only what Redis holds can tell a lost job."""
    command = [sys.executable, "-m", "postman_async", "job", *args, "--redis", redis_url]
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)} if cache is not None else None
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


async def evict_until_gone(redis: aioredis.Redis, key: str) -> None:
    """Fill a small Redis with junk under ``allkeys-random`` until ``key`` was evicted."""
    used = int((await redis.info("memory"))["used_memory"])
    await redis.config_set("maxmemory-policy", "allkeys-random")
    await redis.config_set("maxmemory", str(used + 256 * 1024))
    for start in range(0, 50_000, 50):  # 50 at a time, in one round trip
        async with redis.pipeline(transaction=False) as pipe:
            for n in range(start, start + 50):
                pipe.set(f"junk:{n}", b"x" * 1024)
            await pipe.execute()
        if not await redis.exists(key):
            break
    await redis.config_set("maxmemory", "0")
    await redis.config_set("maxmemory-policy", "noeviction")
    junk = [name async for name in redis.scan_iter(match="junk:*", count=1000)]
    for start in range(0, len(junk), 1000):
        await redis.delete(*junk[start : start + 1000])
    assert not await redis.exists(key)


async def lose_and_resubmit(
    loss: str,
    redis: aioredis.Redis,
    job_redis: RedisServer,
    simulator: Sim,
    workers: Workers,
    tmp_path: Path,
    mutation: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any], set[str], str]:
    """Run a job, lose its data mid-job, wait for "lost", submit it again and let it finish.
    Returns the results, the simulator's stats, the IDs retried before the loss and the log."""
    log = tmp_path / "worker.log"
    workers.start(concurrency=2, log=str(log), mutation=mutation)
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"{i},1\n" for i in simulator.ids))  # the attempt count last read
    submit = ("submit", "j1", "--ids-file", str(ids), "--rate-limit", "20", "--chunks", "2")
    # A short HTTP timeout: the job submitted again reads each ID only once a POST the lost
    # job had in flight is settled (its window + this timeout after the job's creation).
    submit += ("--campaign", simulator.campaign_id, "--timeout", str(HTTP_TIMEOUT))
    first = await asyncio.to_thread(cli, job_redis.url, *submit)
    assert first.returncode == 0, first.stderr

    async def some_retried() -> bool:
        return len((await simulator.stats())["posts"]["acceptedRetries"]) >= 10

    await wait_for_condition(some_retried, "the job to be under way")
    if loss == "flushall, workers restarted":  # a host reboot: no worker remembers in memory
        for proc in workers.procs:  # killed, as by a reboot
            proc.kill()
            await asyncio.to_thread(proc.wait)
        await redis.flushall()
        workers.start(concurrency=2, log=str(log), mutation=mutation)
    elif loss == "restart without AOF":
        await restart_redis(job_redis, redis, lose_data=True)
    elif loss == "flushall":
        await redis.flushall()
    else:
        await evict_until_gone(redis, "postman_async:job:{j1}:meta")
    before = set((await simulator.stats())["posts"]["acceptedRetries"])
    assert 0 < len(before) < len(simulator.ids)

    async def told_lost() -> bool:
        status = await asyncio.to_thread(cli, job_redis.url, "status", "j1")
        return status.returncode == EXIT_LOST and LOST_MESSAGE in status.stderr

    await wait_for_condition(told_lost, "job status to say lost")
    if loss != "flushall, workers restarted":  # then no worker remembers it: only this host

        async def told_elsewhere() -> bool:  # a host with no record: the workers' tombstone
            status = await asyncio.to_thread(
                cli, job_redis.url, "status", "j1", cache=tmp_path / "other-host"
            )
            return status.returncode == EXIT_LOST

        await wait_for_condition(told_elsewhere, "another host's job status to say lost")

    # The same submit, at the workers' full rate: it reads all 40 IDs before any POST.
    again = await asyncio.to_thread(cli, job_redis.url, *submit, "--rate-limit", "1000")
    assert again.returncode == 0, again.stderr
    store = JobStore(redis, "j1")
    await wait_finished(store, timeout=60)
    return await results_by_id(store), await simulator.stats(), before, log.read_text()


@pytest.mark.parametrize(
    "loss", ["restart without AOF", "flushall", "flushall, workers restarted", "eviction"]
)
@pytest.mark.simulator(messages=40)
async def test_lost_job_data_is_told_and_a_resubmission_posts_nothing_twice(
    loss: str,
    redis: aioredis.Redis,
    job_redis: RedisServer,
    simulator: Sim,
    workers: Workers,
    tmp_path: Path,
) -> None:
    results, stats, before, log = await lose_and_resubmit(
        loss, redis, job_redis, simulator, workers, tmp_path
    )
    # At most one retry POST per message over both runs, refused ones included; "retried"
    # exactly for the messages whose retry the server accepted.
    assert_against_ground_truth(results, set(simulator.ids), stats)
    for message_id in before:
        assert "retried earlier (found by read-back" in results[message_id]["detail"]
    assert log.count("j1: lost: Redis lost this job's data") == 1, log
    assert "Traceback" not in log and "never retrieved" not in log, log


@pytest.mark.simulator(messages=40)
async def test_without_read_first_a_resubmission_posts_again(
    redis: aioredis.Redis,
    job_redis: RedisServer,
    simulator: Sim,
    workers: Workers,
    tmp_path: Path,
) -> None:
    """The check above, against workers that POST a re-submitted job's IDs unread."""
    results, stats, _, _ = await lose_and_resubmit(
        "flushall", redis, job_redis, simulator, workers, tmp_path, mutation="no_read_first"
    )
    with pytest.raises(AssertionError, match="a second POST"):
        assert_against_ground_truth(results, set(simulator.ids), stats)


@pytest.mark.simulator(messages=4)
async def test_a_slice_of_the_lost_job_ending_late_does_not_mark_the_job_submitted_again(
    redis: aioredis.Redis,
    job_redis: RedisServer,
    simulator: Sim,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker's slice of the lost incarnation ends (fewer results than IDs) after the job
    was submitted again and this worker ran a chunk of the new one: the loss it reports is
    its slice's, and the new job is not marked lost (seen as a 409 in the FastAPI example)."""

    async def no_kick(job_id: str, chunk: int) -> None:
        """Chunks are run by hand here."""

    settings = simulator.settings(chunks=2)
    real_run_chunk = taskiq_app.run_chunk
    slices: list[str] = []

    async def lost_slice(store: JobStore, *args: Any, **kwargs: Any) -> ChunkStatus:
        slices.append(store.marker)
        if len(slices) > 1:  # the new incarnation's chunk runs for real
            return await real_run_chunk(store, *args, **kwargs)
        await redis.flushall()  # meanwhile: Redis lost the job, and it is submitted again
        await submit_job(redis, "twice", simulator.ids, settings, kick=no_kick)
        assert await context.run("twice", 1) == ChunkStatus.DONE
        return ChunkStatus.LOST_DATA

    config = WorkerConfig.of(
        [CampaignConfig(simulator.campaign_id, simulator.api_key, simulator.base_url, 1000.0)]
    )
    context = taskiq_app.WorkerContext(redis=aioredis.Redis.from_url(job_redis.url), config=config)
    monkeypatch.setattr(taskiq_app, "run_chunk", lost_slice)
    try:
        await submit_job(redis, "twice", simulator.ids, settings, kick=no_kick)
        assert await context.run("twice", 0) == ChunkStatus.LOST_DATA
    finally:
        await context.aclose()
    again = JobStore(redis, "twice")
    assert await again.settings() is not None  # not marked lost
    assert slices[0] != slices[1] and context.known["twice"][0] == slices[1] == again.marker


@pytest.mark.simulator(messages=4)
async def test_a_worker_that_missed_the_finish_does_not_mark_the_expired_job_lost(
    redis: aioredis.Redis, job_redis: RedisServer, simulator: Sim
) -> None:
    """A worker remembers a job (its record on disk) that finished and expired while it was
    stopped: its check finds the keys gone and knows the job ended; no tombstone."""

    async def no_kick(job_id: str, chunk: int) -> None:
        """Nothing runs here."""

    await submit_job(redis, "ended", simulator.ids, simulator.settings(), kick=no_kick)
    store = JobStore(redis, "ended")
    await store.settings()
    config = WorkerConfig.of(
        [CampaignConfig(simulator.campaign_id, simulator.api_key, simulator.base_url, 1000.0)]
    )
    context = taskiq_app.WorkerContext(redis=aioredis.Redis.from_url(job_redis.url), config=config)
    try:
        context.records.remember("ended", store.marker, store.created_ms)
        await store.expire(0)
        await context.check_known()
        assert context.records.get("ended") is None and "ended" not in context.known
    finally:
        await context.aclose()
    assert await redis.exists(store.lost_key) == 0


@pytest.mark.simulator(messages=4)
@pytest.mark.parametrize("first", ["check", "slice", "ended"])
async def test_a_job_created_again_over_an_unrecorded_loss_reads_first_from_the_old_start(
    redis: aioredis.Redis, job_redis: RedisServer, simulator: Sim, first: str
) -> None:
    """Redis lost a job this worker ran, and nobody recorded it (no tombstone; submitted
    again from a host with no record): the job comes back without the read-first flag. The
    worker that knew the old incarnation sets it from the old start, whether its periodic
    check or a slice of the new job gets there first. Not when the old one ended and
    expired (``ended``): then the job is a new one."""

    async def no_kick(job_id: str, chunk: int) -> None:
        """Chunks are run by hand here."""

    settings = simulator.settings(chunks=1)
    config = WorkerConfig.of(
        [CampaignConfig(simulator.campaign_id, simulator.api_key, simulator.base_url, 1000.0)]
    )
    context = taskiq_app.WorkerContext(redis=aioredis.Redis.from_url(job_redis.url), config=config)
    try:
        await submit_job(redis, "again", simulator.ids, settings, kick=no_kick)
        old = JobStore(redis, "again")
        await old.settings()
        context.known["again"] = (old.marker, old.created_ms)  # it ran a slice of it
        if first == "ended":
            await old.expire(0)
        else:
            await redis.flushall()
        await submit_job(redis, "again", simulator.ids, settings, kick=no_kick)
        new = JobStore(redis, "again")
        assert (await new.require_settings()).read_first_ms is None  # nobody knew
        if first == "slice":
            assert await context.run("again", 0) == ChunkStatus.DONE
        else:
            await context.check_known()
    finally:
        await context.aclose()
    read_first = (await new.require_settings()).read_first_ms
    assert read_first == (None if first == "ended" else old.created_ms)
    if first == "slice":  # the slice read every ID before it POSTed: the old start is old
        assert (await new.progress()).done == len(simulator.ids)
