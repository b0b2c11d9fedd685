from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest_asyncio

from postman_async import PostmanClient
from postman_async.testing import PostmanSimulator

FAST = {"rate_limit": 1000.0, "time_scale": 100.0, "batch_enqueue_delay": 0.5}


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


def client_for(sim: PostmanSimulator, **options: Any) -> PostmanClient:
    return PostmanClient(
        api_key=options.pop("api_key", sim.api_key),
        campaign_id=options.pop("campaign_id", sim.campaign_id),
        base_url=sim.base_url,
        rate_limit=options.pop("rate_limit", sim.rate_limit),
        **options,
    )
