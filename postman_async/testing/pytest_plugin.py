"""pytest plugin (registered through the ``pytest11`` entry point).

Fixtures:

- ``postman_simulator``: a running :class:`PostmanSimulator` (fast clock, high rate limit).
- ``postman_client``: a :class:`PostmanClient` for the simulator's default campaign.

Override ``postman_simulator_options`` in your conftest to change the simulator's settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from ..client import PostmanClient
from .simulator import PostmanSimulator


@pytest.fixture
def postman_simulator_options() -> dict[str, Any]:
    """Keyword arguments for the ``postman_simulator`` fixture."""
    return {"rate_limit": 1000.0}


@pytest_asyncio.fixture
async def postman_simulator(
    postman_simulator_options: dict[str, Any],
) -> AsyncIterator[PostmanSimulator]:
    async with PostmanSimulator(**postman_simulator_options) as simulator:
        yield simulator


@pytest_asyncio.fixture
async def postman_client(postman_simulator: PostmanSimulator) -> AsyncIterator[PostmanClient]:
    async with PostmanClient(
        api_key=postman_simulator.api_key,
        campaign_id=postman_simulator.campaign_id,
        base_url=postman_simulator.base_url,
        rate_limit=postman_simulator.rate_limit,
    ) as client:
        yield client
