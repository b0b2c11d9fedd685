"""Trust boundaries of the job workers: a worker sends its key only where its own
configuration says, whatever a job record in Redis names. A hostile server in the test
records every request that reaches it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis.asyncio as aioredis
from aiohttp import web

from postman_async.jobs import JobSettings, JobStore, submit_job
from postman_async.jobs.config import CampaignConfig, WorkerConfig, WorkerConfigError
from postman_async.jobs.runner import ChunkStatus
from postman_async.jobs.taskiq_app import WorkerContext

from ..helpers import wait_for_condition
from ..redis_server import RedisServer
from .harness import FAST, Sim, Workers


async def no_kick(job_id: str, chunk: int) -> None:
    """Chunks are run by hand in these tests."""


@pytest.fixture
async def hostile() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A server that answers everything and records who called it (and with what key)."""
    seen: list[web.Request] = []

    async def record(request: web.Request) -> web.Response:
        seen.append(request)
        return web.json_response({"id": "message_x", "latestStatus": "failure"}, status=201)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/api/v2", seen
    finally:
        await runner.cleanup()


@pytest.fixture
async def context(job_redis: RedisServer, simulator: Sim) -> AsyncIterator[WorkerContext]:
    """A worker configured for the simulator's campaign only, at the simulator's host."""
    config = WorkerConfig.of(
        [CampaignConfig(simulator.campaign_id, simulator.api_key, simulator.base_url, 1000.0)]
    )
    ctx = WorkerContext(redis=aioredis.Redis.from_url(job_redis.url), config=config)
    try:
        yield ctx
    finally:
        await ctx.aclose()


async def run_all_chunks(context: WorkerContext, job_id: str, chunks: int) -> set[ChunkStatus]:
    return {await context.run(job_id, chunk) for chunk in range(chunks)}


@pytest.mark.simulator(messages=8)
async def test_a_job_naming_another_campaign_or_host_is_refused_and_nothing_is_sent(
    redis: aioredis.Redis,
    simulator: Sim,
    context: WorkerContext,
    hostile: tuple[str, list[web.Request]],
) -> None:
    hostile_url, seen = hostile
    # The attack of the review: another campaign at the attacker's host; then the served
    # campaign pinned to the attacker's host (a job record written straight into Redis).
    for job_id, campaign in (("evil-1", "attacker_campaign"), ("evil-2", simulator.campaign_id)):
        settings = JobSettings(campaign_id=campaign, base_url=hostile_url, chunks=2, **FAST)
        await submit_job(redis, job_id, simulator.ids, settings, kick=no_kick)
        assert await run_all_chunks(context, job_id, 2) == {ChunkStatus.REFUSED}
        progress = await JobStore(redis, job_id).progress()
        assert progress.state == "refused" and progress.done == 0
        (reason,) = progress.refusals.values()
        assert ("not configured for campaign attacker_campaign" in reason) is (job_id == "evil-1")
        assert ("pins base URL http://127.0.0.1" in reason) is (job_id == "evil-2")
        assert progress.eta_seconds is None
    assert seen == []  # zero requests reached the hostile host
    stats = await simulator.stats()
    assert stats["requests"] == 0  # and none went anywhere else either

    # The same worker runs a job for its own campaign: the refusals were not a broken worker.
    await submit_job(redis, "good-1", simulator.ids, simulator.settings(chunks=2), kick=no_kick)
    for _ in range(20):
        if await run_all_chunks(context, "good-1", 2) == {ChunkStatus.DONE}:
            break
    progress = await JobStore(redis, "good-1").progress()
    assert progress.finished and progress.counts == {"retried": len(simulator.ids)}
    assert seen == []


@pytest.mark.simulator(messages=4)
async def test_a_worker_that_obeys_the_job_record_sends_its_key_to_the_hostile_host(
    redis: aioredis.Redis,
    simulator: Sim,
    context: WorkerContext,
    hostile: tuple[str, list[web.Request]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check above, against the real worker with its refusal removed and the job's base
    URL obeyed (as before this was fixed): the hostile host sees the key."""
    hostile_url, seen = hostile
    monkeypatch.setattr(WorkerConfig, "refusal", lambda self, campaign, base_url: None)
    real_client = WorkerContext._client

    def obey_the_job(self: WorkerContext, campaign: CampaignConfig, settings: JobSettings) -> Any:
        pinned = attrs.evolve(campaign, base_url=settings.base_url or campaign.base_url)
        return real_client(self, pinned, settings)

    monkeypatch.setattr(WorkerContext, "_client", obey_the_job)
    settings = JobSettings(
        campaign_id=simulator.campaign_id, base_url=hostile_url, chunks=1, rate=1000.0, **FAST
    )
    await submit_job(redis, "evil-1", simulator.ids, settings, kick=no_kick)
    await context.run("evil-1", 0)
    assert seen and seen[0].headers["Authorization"] == f"Bearer {simulator.api_key}"


@pytest.mark.simulator(messages=4)
async def test_a_job_without_a_base_url_goes_to_the_workers_own(
    redis: aioredis.Redis, simulator: Sim, context: WorkerContext
) -> None:
    settings = JobSettings(campaign_id=simulator.campaign_id, chunks=1, rate=1000.0, **FAST)
    await submit_job(redis, "plain-1", simulator.ids, settings, kick=no_kick)
    assert await JobStore(redis, "plain-1").settings() == settings  # no endpoint stored
    meta = await redis.hgetall("postman_async:job:{plain-1}:meta")
    assert b"base_url" not in meta and not any(
        simulator.api_key.encode() in v for v in meta.values()
    )
    for _ in range(20):
        if await context.run("plain-1", 0) == ChunkStatus.DONE:
            break
    assert (await JobStore(redis, "plain-1").progress()).counts == {"retried": len(simulator.ids)}


def test_worker_configuration_from_environment_and_file(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("key_test_abc\n")
    config = WorkerConfig.from_env(
        {"POSTMAN_CAMPAIGN_ID": "campaign_a", "POSTMAN_API_KEY_FILE": str(key_file)}
    )
    campaign = config.campaigns["campaign_a"]
    assert campaign.api_key == "key_test_abc" and "key_test_abc" not in repr(config)
    assert campaign.base_url == "https://test.postman.gov.sg/api/v2"  # from the key's prefix
    assert config.refusal("campaign_a", None) is None
    assert config.refusal("campaign_a", "https://test.postman.gov.sg/api/v2/") is None
    assert "not configured for campaign campaign_b" in str(config.refusal("campaign_b", None))

    path = tmp_path / "campaigns.json"
    path.write_text(
        json.dumps(
            {
                "campaigns": [
                    {"campaign_id": "a", "api_key": "key_live_1"},
                    {
                        "campaign_id": "b",
                        "api_key_file": str(key_file),
                        "base_url": "http://127.0.0.1:9/api/v2",
                    },
                ]
            }
        )
    )
    both = WorkerConfig.from_env({"POSTMAN_ASYNC_CAMPAIGNS_FILE": str(path)})
    assert both.campaigns["a"].base_url == "https://postman.gov.sg/api/v2"
    assert both.campaigns["b"].base_url == "http://127.0.0.1:9/api/v2"
    assert both.refusal("b", "https://postman.gov.sg/api/v2") is not None

    for env, fragment in (
        ({}, "no campaign configured"),
        ({"POSTMAN_CAMPAIGN_ID": "a"}, "no API key"),
        (
            {
                "POSTMAN_CAMPAIGN_ID": "a",
                "POSTMAN_API_KEY": "k",
                "POSTMAN_BASE_URL": "http://evil.example/api/v2",
            },
            "plain http",
        ),
        ({"POSTMAN_ASYNC_CAMPAIGNS_FILE": str(tmp_path / "missing.json")}, "cannot read"),
        ({"POSTMAN_ASYNC_CAMPAIGNS_FILE": str(key_file)}, "must be JSON"),
    ):
        with pytest.raises(WorkerConfigError, match=fragment):
            WorkerConfig.from_env(env)


@pytest.mark.simulator(messages=4)
async def test_a_worker_process_refuses_a_submitted_job_for_another_campaign(
    redis: aioredis.Redis, job_redis: RedisServer, simulator: Sim, workers: Workers, tmp_path: Path
) -> None:
    workers.start(concurrency=2)
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(simulator.ids) + "\n")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "postman_async", "job", *args, "--redis", job_redis.url]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    # The review's command: a job cannot name a base URL any more.
    pinned = await asyncio.to_thread(
        cli, "submit", "evil-1", "--ids-file", str(ids), "--campaign", "x", "--base-url", "h"
    )
    assert pinned.returncode == 2 and "--base-url" in pinned.stderr
    submitted = await asyncio.to_thread(
        cli, "submit", "evil-1", "--ids-file", str(ids), "--campaign", "attacker_campaign"
    )
    assert submitted.returncode == 0, submitted.stderr

    async def refused() -> bool:
        return (await JobStore(redis, "evil-1").progress()).state == "refused"

    await wait_for_condition(refused, "a worker to refuse the job")
    status = await asyncio.to_thread(cli, "status", "evil-1")
    assert status.returncode == 3, status.stdout + status.stderr
    assert "refused by worker" in status.stdout
    assert "not configured for campaign attacker_campaign" in status.stdout
    assert (await simulator.stats())["requests"] == 0


@pytest.mark.simulator(messages=4)
async def test_a_key_the_server_refuses_refuses_the_job_instead_of_looping(
    redis: aioredis.Redis, job_redis: RedisServer, simulator: Sim
) -> None:
    config = WorkerConfig.of(
        [CampaignConfig(simulator.campaign_id, "key_test_revoked", simulator.base_url, 1000.0)]
    )
    ctx = WorkerContext(redis=aioredis.Redis.from_url(job_redis.url), config=config)
    try:
        await submit_job(
            redis, "bad-key", simulator.ids, simulator.settings(chunks=1), kick=no_kick
        )
        assert await ctx.run("bad-key", 0) == ChunkStatus.REFUSED
    finally:
        await ctx.aclose()
    progress = await JobStore(redis, "bad-key").progress()
    (reason,) = progress.refusals.values()
    assert "refused this worker's key" in reason and "key_test_revoked" not in reason
    assert progress.done == 0


async def test_a_jobs_rate_is_capped_by_the_campaigns_and_never_sticks() -> None:
    config = WorkerConfig.from_env(
        {"POSTMAN_CAMPAIGN_ID": "a", "POSTMAN_API_KEY": "key_live_x", "POSTMAN_RATE_LIMIT": "5"}
    )
    campaign = config.campaigns["a"]
    assert campaign.rate_for(1000.0) == 5.0 and campaign.rate_for(2.0) == 2.0
    ctx = WorkerContext(redis=aioredis.Redis(), config=config)  # no connection is made
    try:
        fast = ctx._client(campaign, JobSettings(campaign_id="a", rate=1000.0))
        slow = ctx._client(campaign, JobSettings(campaign_id="a", rate=2.0, http_timeout=5.0))
        assert fast.rate_limit == 5.0 and slow.rate_limit == 2.0 and fast is not slow
    finally:
        await ctx.aclose()
    with pytest.raises(WorkerConfigError, match="rate"):
        WorkerConfig.from_env(
            {"POSTMAN_CAMPAIGN_ID": "a", "POSTMAN_API_KEY": "k", "POSTMAN_RATE_LIMIT": "lots"}
        )
