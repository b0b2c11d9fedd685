"""Fixtures of the job tests: a session redis-server with the journal's durability settings,
the simulator in its own process per test, and the test's worker processes."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from postman_async.testing import SimulatorProcess

from .harness import JobRedis, Sim, Workers


@pytest.fixture(scope="session")
def job_redis() -> Iterator[JobRedis]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing: .ci/run should have installed it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = JobRedis()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.dir, ignore_errors=True)


@pytest.fixture
async def redis(job_redis: JobRedis) -> AsyncIterator[aioredis.Redis]:
    from postman_async.jobs import taskiq_app

    taskiq_app.configure(job_redis.url)  # a pool for this test's event loop
    client = aioredis.Redis.from_url(job_redis.url)
    await client.flushall()
    yield client
    await client.aclose()
    await taskiq_app.broker.connection_pool.disconnect()


@pytest.fixture
def simulator(request: pytest.FixtureRequest) -> Iterator[Sim]:
    marker = request.node.get_closest_marker("simulator")
    messages = marker.kwargs.get("messages", 60) if marker else 60
    args = list(marker.args) if marker else []
    with tempfile.TemporaryDirectory() as tmp:
        ids_file = os.path.join(tmp, "ids.txt")
        with SimulatorProcess(
            "--rate-limit", "1000", "--failed-messages", str(messages), "--ids-out", ids_file, *args
        ) as sim:
            with open(ids_file, encoding="utf-8") as handle:
                ids = handle.read().split()
            yield Sim(sim.base_url, sim.campaign_id, sim.api_key, ids)


@pytest.fixture
def workers(job_redis: JobRedis, simulator: Sim) -> Iterator[Workers]:
    pool = Workers(job_redis.url, simulator.api_key)
    yield pool
    pool.stop_all()
