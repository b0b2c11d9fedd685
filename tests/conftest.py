"""Shared test setup.

aioresponses 0.7.x builds ``ClientResponse`` without the ``stream_writer`` argument that
aiohttp >= 3.14 requires (pnuckowski/aioresponses#289). We keep aioresponses and hand it a
subclass that supplies a null writer; where aiohttp does not take ``stream_writer`` the shim is
a no-op.
"""

from __future__ import annotations

import inspect
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import aioresponses.core
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from postman_async import _session
from postman_async.testing import PostmanSimulator

from .redis_server import RedisServer


def pytest_configure(config: pytest.Config) -> None:
    """Compile the package's bytecode once (controller only): the ~250 processes the suite
    starts (CLI runs, workers, simulators) then load it instead of compiling every module
    each, even where ``PYTHONDONTWRITEBYTECODE`` keeps them from writing it."""
    if not hasattr(config, "workerinput"):
        import compileall
        from pathlib import Path

        root = Path(__file__).parents[1]
        for package in ("postman_async", "tests", "examples"):
            compileall.compile_dir(root / package, quiet=1)


#: Where the long tests are (worker processes, subprocesses, a wheel build), longest first.
#: They are started first, so that the short ones fill the workers' tails.
SLOW_FIRST = (
    "tests/packaging/",
    "tests/jobs/",
    "tests/examples/",
    "tests/security/test_cli_leaks.py",
    "tests/cli/",
    "tests/distributed/",
    "tests/integration/",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid
        return next((i for i, p in enumerate(SLOW_FIRST) if path.startswith(p)), len(SLOW_FIRST))

    items.sort(key=rank)  # stable: each group keeps its order


class _NullStreamWriter:
    output_size = 0


if "stream_writer" in inspect.signature(aiohttp.ClientResponse.__init__).parameters:

    class _CompatClientResponse(aiohttp.ClientResponse):
        def __init__(self, method: str, url: Any, *, stream_writer: Any = None, **kw: Any):
            super().__init__(method, url, stream_writer=stream_writer or _NullStreamWriter(), **kw)

    aioresponses.core.ClientResponse = _CompatClientResponse  # type: ignore[misc]


@pytest.fixture(autouse=True)
def _fresh_retry_budgets() -> Iterator[None]:
    """Retry budgets are process-wide per campaign; tests must not drain each other's."""
    _session._budgets.clear()
    yield
    _session._budgets.clear()


#: Tests run the limiter fast and step the lifecycle with `sim.advance()`; nothing races it.
FAST = {"rate_limit": 1000.0, "time_scale": 1.0, "batch_enqueue_delay": 0.5}


@pytest_asyncio.fixture
async def make_sim() -> AsyncIterator[Callable[..., Any]]:
    """Start simulators with settings; all are stopped after the test."""
    started: list[PostmanSimulator] = []

    async def make(**options: Any) -> PostmanSimulator:
        sim = PostmanSimulator(**{**FAST, **options})
        await sim.start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.stop()


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``XDG_CACHE_HOME`` of this test's own, inherited by the processes it starts: what
    the CLI learns between runs and the hosts' job records are never the user's, and one
    test's (an unfinished job a worker remembers) never steers another's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield


# -- Redis for the job tests (tests/jobs, tests/examples) ---------------------------------


@pytest.fixture(scope="session")
def job_redis() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing: .ci/run should have installed it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(durable=True)
    server.start()
    yield server
    server.remove()


@pytest.fixture
async def redis(job_redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    from postman_async.jobs import taskiq_app

    taskiq_app.configure(job_redis.url)  # a pool for this test's event loop
    client = aioredis.Redis.from_url(job_redis.url)
    await client.flushall()
    yield client
    await client.aclose()
    await taskiq_app.broker.connection_pool.disconnect()
