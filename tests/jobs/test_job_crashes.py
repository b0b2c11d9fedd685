"""Distributed retry jobs against real processes: redis-server, the simulator and taskiq
workers. Every test checks results == distinct inputs, ID by ID, against the simulator's
record of every POST it processed."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from postman_async.jobs import JobStore, submit_job, supervise_once
from postman_async.jobs.taskiq_app import kick
from postman_async.models import MessageStatus
from postman_async.reports import MessageState

from ..helpers import wait_for_condition
from ..redis_server import RedisServer
from .harness import (
    FAST,
    Sim,
    Workers,
    assert_against_ground_truth,
    restart_redis,
    results_by_id,
    wait_finished,
)


def known(ids: list[str]) -> dict[str, MessageState]:
    """The simulator pre-creates failed messages with one attempt (as a listing shows)."""
    return {i: MessageState(i, MessageStatus.FAILURE, 1) for i in ids}


async def run_job(
    redis: aioredis.Redis, sim: Sim, job_id: str, ids: list[object], **settings: object
) -> JobStore:
    await submit_job(redis, job_id, ids, sim.settings(**settings), known=known(sim.ids))
    return JobStore(redis, job_id)


async def test_duplicates_and_invalid_ids_get_one_result_each(
    redis: aioredis.Redis, simulator: Sim, workers: Workers
) -> None:
    for _ in range(2):
        workers.start()
    inputs: list[object] = [*simulator.ids, *simulator.ids[:10], "bad id", "", 42, "message_nope"]
    store = await run_job(redis, simulator, "dups", inputs)
    await wait_finished(store)
    results = await results_by_id(store)
    distinct = {*simulator.ids, "bad id", "", "42", "message_nope"}
    assert_against_ground_truth(results, distinct, await simulator.stats())
    progress = await store.progress()
    assert progress.duplicates == 10 and progress.submitted == len(inputs)
    assert results["bad id"]["outcome"] == "error" and results["42"]["outcome"] == "error"
    assert results["message_nope"]["outcome"] == "skipped_not_found"
    assert progress.counts["retried"] == len(simulator.ids)


@pytest.mark.parametrize("point", ["after_intent", "before_result"])
@pytest.mark.simulator("--retry-failure-rate", "1.0", "--time-scale", "20")
async def test_sigkill_around_the_post_sends_no_second_post(
    redis: aioredis.Redis, simulator: Sim, workers: Workers, point: str
) -> None:
    """Killed after the intent (no POST yet), or after the server processed the POST but
    before the result was written, with the retried message failing again: the next holder
    reads once and either POSTs (nothing went out) or records ``retried`` (it took)."""
    results, stats, victim = await kill_scenario(redis, simulator, workers, point)
    assert_against_ground_truth(results, set(simulator.ids), stats)
    assert stats["posts"]["retries"][victim] == 1
    assert results[victim]["outcome"] == "retried"
    if point == "before_result":  # read after it failed again: still never re-POSTed
        assert "now failure" in results[victim]["detail"], results[victim]
        assert "not re-sent" in results[victim]["detail"]


@pytest.mark.parametrize("point", ["before_intent", "after_intent", "before_post"])
async def test_a_stopped_worker_resumed_after_its_lease_moved_on_is_fenced_out(
    redis: aioredis.Redis, simulator: Sim, workers: Workers, point: str, tmp_path: Path
) -> None:
    results, stats, victim = await stop_scenario(redis, simulator, workers, point, tmp_path)
    assert_against_ground_truth(results, set(simulator.ids), stats)
    assert stats["posts"]["retries"][victim] == 1


async def test_a_stale_worker_resumed_while_the_new_holder_works_the_chunk_is_fenced_out(
    redis: aioredis.Redis, simulator: Sim, workers: Workers, tmp_path: Path
) -> None:
    results, stats, victim = await stale_against_live_holder(redis, simulator, workers, tmp_path)
    assert_against_ground_truth(results, set(simulator.ids), stats)
    assert stats["posts"]["retries"][victim] == 1


Outcome = tuple[dict[str, dict[str, Any]], dict[str, Any], str]


async def stale_against_live_holder(
    redis: aioredis.Redis, sim: Sim, workers: Workers, tmp_path: Path, mutation: str | None = None
) -> Outcome:
    """W1 is SIGSTOPped before its intent for the victim. W2 takes the chunk over once W1's
    lease lapsed, writes its own intent for the victim and is SIGSTOPped as its POST is about
    to go out, its lease still live. W1 is resumed then, while W2 holds the chunk: it must be
    fenced out (logged), not POST. Then W2 goes on and POSTs, within its window."""
    victim = sim.ids[3]
    stale_log = tmp_path / "stale.log"
    stale = workers.start(
        failpoints=f"before_intent={victim}@stop", log=str(stale_log), mutation=mutation
    )
    store = await run_job(redis, sim, "stale-live", sim.ids, window=3.0, lease_ttl=4.0)
    await _until(lambda: _is_stopped(stale.pid), "W1 stopped")
    holder = workers.start(failpoints=f"before_post={victim}@stop", mutation=mutation)
    # W1's leases lapse 4 s after its last heartbeat; the chunks are delivered again then (as
    # a duplicated delivery would), rather than when the supervisors' re-kick debounce, twice
    # the lease TTL after the submit, ends.
    await _until(lambda: _leases_lapsed(store), "W1's leases to lapse")
    for chunk in range(sim.settings().chunks):
        await kick(store.job_id, chunk)
    await _until(lambda: _is_stopped(holder.pid), "W2 stopped before its POST")
    stale.send_signal(signal.SIGCONT)

    async def stale_acted() -> bool:
        posted = (await sim.stats())["posts"]["retries"].get(victim, 0) > 0
        return posted or "fenced out" in stale_log.read_text()

    await _until(stale_acted)
    holder.send_signal(signal.SIGCONT)
    await wait_finished(store)
    return await results_by_id(store), await sim.stats(), victim


async def kill_scenario(
    redis: aioredis.Redis, sim: Sim, workers: Workers, point: str, mutation: str | None = None
) -> Outcome:
    """A worker SIGKILLed at ``point`` for one message; another finishes the job."""
    victim = sim.ids[7]
    doomed = workers.start(failpoints=f"{point}={victim}", mutation=mutation)
    store = await run_job(redis, sim, f"kill-{point}", sim.ids)
    assert await asyncio.to_thread(doomed.wait, 30) == -signal.SIGKILL
    workers.start(mutation=mutation)
    await wait_finished(store)
    return await results_by_id(store), await sim.stats(), victim


async def stop_scenario(
    redis: aioredis.Redis,
    sim: Sim,
    workers: Workers,
    point: str,
    tmp_path: Path,
    mutation: str | None = None,
) -> Outcome:
    """A worker SIGSTOPped at ``point`` for one message, resumed once another worker has
    taken its chunk over and finished the job."""
    victim = sim.ids[3]
    log = tmp_path / "stopped.log"
    stopped = workers.start(failpoints=f"{point}={victim}@stop", mutation=mutation, log=str(log))
    store = await run_job(redis, sim, f"stop-{point}", sim.ids)
    await _until(lambda: _is_stopped(stopped.pid))
    workers.start(mutation=mutation)
    await wait_finished(store)
    posted_before = (await sim.stats())["posts"]["retries"].get(victim, 0)
    stopped.send_signal(signal.SIGCONT)

    async def stale_acted() -> bool:  # it POSTed again, or it logged that it was fenced out
        posted = (await sim.stats())["posts"]["retries"].get(victim, 0) > posted_before
        return posted or "fenced out" in log.read_text()

    await _until(stale_acted)
    return await results_by_id(store), await sim.stats(), victim


async def test_a_chunk_delivered_twice_and_one_lost_still_finish_once(
    redis: aioredis.Redis, simulator: Sim, workers: Workers
) -> None:
    delivered: list[tuple[str, int]] = []

    async def lossy_kick(job_id: str, chunk: int) -> None:
        delivered.append((job_id, chunk))
        if chunk == 0:
            return  # lost: never reaches the broker
        await kick(job_id, chunk)
        if chunk == 1:
            await kick(job_id, chunk)  # duplicated delivery

    await submit_job(
        redis,
        "lossy",
        simulator.ids,
        simulator.settings(),
        known=known(simulator.ids),
        kick=lossy_kick,
    )
    store = JobStore(redis, "lossy")
    for _ in range(2):
        workers.start()
    await wait_finished(store)
    assert (("lossy", 0)) in delivered
    assert_against_ground_truth(
        await results_by_id(store), set(simulator.ids), await simulator.stats()
    )


@pytest.mark.simulator("--latency-ms", "20", messages=150)
async def test_a_redis_restart_mid_job_loses_nothing(
    redis: aioredis.Redis, job_redis: RedisServer, simulator: Sim, workers: Workers
) -> None:
    for _ in range(2):
        workers.start(concurrency=2)
    store = await run_job(redis, simulator, "restart", simulator.ids, chunks=2)
    await _until(lambda: _done_at_least(store, 20))
    await restart_redis(job_redis, redis)
    await wait_finished(store, timeout=90)
    progress = await store.progress()
    assert progress.done < len(simulator.ids) + 1
    assert_against_ground_truth(
        await results_by_id(store), set(simulator.ids), await simulator.stats()
    )


@pytest.mark.simulator("--rate-limit", "20", "--competing-share", "0.5", messages=40)
async def test_a_429_storm_across_four_workers_keeps_one_budget(
    redis: aioredis.Redis, simulator: Sim, workers: Workers
) -> None:
    """A competing client takes half of the campaign's 20/s: four workers that share the
    campaign's Redis limiter meet a storm of 429s, slow down together, and the server never
    sees more than 20 of their calls in a sliding second."""
    for _ in range(4):
        workers.start(concurrency=4)
    store = await run_job(redis, simulator, "storm", simulator.ids, rate=20.0, chunks=8)
    await wait_finished(store, timeout=90)
    stats = await simulator.stats()
    assert stats["throttled"] > 0
    assert stats["maxPerSecond"] <= 20
    assert_against_ground_truth(await results_by_id(store), set(simulator.ids), stats)


async def test_a_killed_producer_rerun_submits_each_id_once(
    redis: aioredis.Redis, job_redis: RedisServer, simulator: Sim, workers: Workers, tmp_path: Path
) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join([*simulator.ids, *simulator.ids[:5]]) + "\n")
    producer = _producer(job_redis.url, simulator, ids_file, die_after=25)
    assert await asyncio.to_thread(producer.wait, 30) == -signal.SIGKILL
    progress = await JobStore(redis, "producer").progress()
    assert not progress.sealed and 0 < progress.submitted < len(simulator.ids)
    workers.start()
    rerun = _producer(job_redis.url, simulator, ids_file, die_after=0)
    assert await asyncio.to_thread(rerun.wait, 30) == 0
    store = JobStore(redis, "producer")
    await wait_finished(store)
    progress = await store.progress()
    assert progress.submitted == len(simulator.ids) + 5 and progress.duplicates == 5
    assert_against_ground_truth(
        await results_by_id(store), set(simulator.ids), await simulator.stats()
    )


@pytest.mark.simulator("--rate-limit", "20", messages=80)
async def test_cancel_stops_new_posts_and_still_gives_every_id_a_result(
    redis: aioredis.Redis, simulator: Sim, workers: Workers
) -> None:
    """Cancelled a few IDs in (at 20/s: the job is 4 s long), the rest are not POSTed."""
    workers.start()
    store = await run_job(redis, simulator, "cancel", simulator.ids, rate=20.0)
    await _until(lambda: _done_at_least(store, 10))
    await store.cancel()
    await wait_finished(store)
    results = await results_by_id(store)
    stats = await simulator.stats()
    assert_against_ground_truth(results, set(simulator.ids), stats)
    cancelled = [i for i, r in results.items() if r["outcome"] == "cancelled"]
    assert len(cancelled) > 40
    assert all(i not in stats["posts"]["retries"] for i in cancelled)
    assert (await store.progress()).state == "cancelled"


@pytest.mark.simulator("--server-error-rate", "0.1", messages=30)
async def test_server_errors_on_posts_and_reads_never_double_a_post(
    redis: aioredis.Redis, simulator: Sim, workers: Workers
) -> None:
    """5xx answers (the POST's outcome unknown, reads failing): an ID whose answer was lost
    stays pending with its intent and is settled by a read before any re-send. (The workers
    pause 0.5 s, not 5 s, after such a transient error.)"""
    for _ in range(2):
        workers.start(transient_pause=0.5)
    store = await run_job(redis, simulator, "faults", simulator.ids)
    await wait_finished(store, timeout=90)
    results = await results_by_id(store)
    assert_against_ground_truth(results, set(simulator.ids), await simulator.stats())
    assert all(r["outcome"] == "retried" for r in results.values())


@pytest.mark.simulator(messages=20)
async def test_a_budget_share_paces_the_job_through_its_own_shared_limiter(
    redis: aioredis.Redis, simulator: Sim, workers: Workers
) -> None:
    workers.start()
    store = await run_job(redis, simulator, "share", simulator.ids, rate=20.0, budget_share=0.5)
    await wait_finished(store)
    assert_against_ground_truth(
        await results_by_id(store), set(simulator.ids), await simulator.stats()
    )
    share_key = f"postman_async:{{{simulator.campaign_id}.job.share}}:tat"
    assert await redis.exists(share_key)  # the job's 10/s share, in Redis for every worker


async def test_supervisor_rekicks_only_what_stalled(redis: aioredis.Redis, simulator: Sim) -> None:
    kicked: list[int] = []

    async def record(job_id: str, chunk: int) -> None:
        kicked.append(chunk)

    settings = simulator.settings(lease_ttl=0.6)  # just above the 0.5 s window
    await submit_job(redis, "sup", simulator.ids, settings, kick=record)
    assert sorted(kicked) == [0, 1, 2, 3]
    assert await supervise_once(redis, record) == 0  # just kicked: debounced
    kicked.clear()

    async def all_kicked_again() -> bool:  # after twice the lease TTL, nobody having taken them
        await supervise_once(redis, record)
        return len(kicked) >= 4

    await _until(all_kicked_again)
    assert sorted(kicked) == [0, 1, 2, 3]  # each once: the claim is debounced


# -- helpers ------------------------------------------------------------------------------------


def _producer(redis_url: str, sim: Sim, ids_file: Path, die_after: int) -> subprocess.Popen[bytes]:
    code = f"""
import asyncio, os, signal
import redis.asyncio as aioredis
from postman_async.jobs import JobSettings, JobStore, store
store.SUBMIT_BATCH = 10
async def lines():
    with open({str(ids_file)!r}) as handle:
        for n, line in enumerate(handle):
            if {die_after} and n == {die_after}:
                os.kill(os.getpid(), signal.SIGKILL)
            yield line.strip()
async def main():
    from postman_async.jobs import taskiq_app, submit_job
    taskiq_app.configure({redis_url!r})
    r = aioredis.Redis.from_url({redis_url!r})
    settings = JobSettings(campaign_id={sim.campaign_id!r}, base_url={sim.base_url!r}, chunks=4,
                           rate=1000.0, **{FAST!r})
    await submit_job(r, "producer", lines(), settings)
    await r.aclose()
asyncio.run(main())
"""
    return subprocess.Popen([sys.executable, "-c", code])


async def _leases_lapsed(store: JobStore) -> bool:
    """No chunk of the job has a live lease (Redis time, as the journal's scripts read it)."""
    seconds, micros = await store.redis.time()
    now_ms = seconds * 1000 + micros // 1000
    leases = await store.redis.hgetall(store.key("leases"))
    return all(int(raw.split(b"|")[1]) <= now_ms for raw in leases.values())


def _is_stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
        return handle.read().rsplit(")", 1)[1].split()[0] == "T"


async def _until(check: Callable[[], bool | Awaitable[bool]], what: str = "a condition") -> None:
    """Poll ``check`` (sync or async) until true; a hang guard, not a timing assertion."""
    await wait_for_condition(check, what)


async def _done_at_least(store: JobStore, count: int) -> bool:
    return (await store.progress()).done >= count
