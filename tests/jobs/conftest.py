"""Fixtures of the job tests: a session redis-server with the journal's durability settings,
the simulator in its own process per test, and the test's worker processes."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from postman_async.testing import SimulatorProcess

from ..redis_server import RedisServer
from .harness import Sim, Workers


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
def workers(job_redis: RedisServer, simulator: Sim) -> Iterator[Workers]:
    pool = Workers(job_redis.url, simulator.api_key, simulator.campaign_id, simulator.base_url)
    yield pool
    pool.stop_all()
