"""pytest plugin (registered through the ``pytest11`` entry point, so installing the package
makes its fixtures available in every pytest run).

Fixtures:

- ``postman_simulator``: a running :class:`PostmanSimulator` (fast clock, high rate limit).
- ``postman_client``: a :class:`PostmanClient` for the simulator's default campaign.
- ``postman_simulator_options``: the simulator's settings; override it in your conftest.

Importing the plugin needs only the package's runtime dependencies and pytest, so it never
breaks another project's test run. The two async fixtures need ``pytest-asyncio``
(``pip install pytest-asyncio``, with ``asyncio_mode = "auto"``); without it, a test that asks
for one fails with a message that says so, and no other test is touched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import pytest

from ..client import PostmanClient
from .simulator import PostmanSimulator

try:
    import pytest_asyncio
except ImportError:  # a dev-only dependency: the async fixtures say so when used
    pytest_asyncio = None  # type: ignore[assignment]

NEEDS_PYTEST_ASYNCIO = (
    "the {name} fixture (from postman_async's pytest plugin) needs pytest-asyncio: "
    'pip install pytest-asyncio, and set asyncio_mode = "auto"'
)


@pytest.fixture
def postman_simulator_options() -> dict[str, Any]:
    """Keyword arguments for the ``postman_simulator`` fixture."""
    return {"rate_limit": 1000.0}


def _async_fixture(function: Callable[..., AsyncIterator[Any]]) -> Any:
    """An async fixture through pytest-asyncio, or, without it, a fixture of the same name
    that fails the test asking for it with a message saying what to install."""
    if pytest_asyncio is not None:
        return pytest_asyncio.fixture(function)
    name = function.__name__

    @pytest.fixture(name=name)
    def needs_pytest_asyncio() -> NoReturn:
        pytest.fail(NEEDS_PYTEST_ASYNCIO.format(name=name), pytrace=False)

    needs_pytest_asyncio.__doc__ = function.__doc__
    return needs_pytest_asyncio


async def _postman_simulator(
    postman_simulator_options: dict[str, Any],
) -> AsyncIterator[PostmanSimulator]:
    """A running simulator, stopped after the test (settings: ``postman_simulator_options``)."""
    async with PostmanSimulator(**postman_simulator_options) as simulator:
        yield simulator


async def _postman_client(postman_simulator: PostmanSimulator) -> AsyncIterator[PostmanClient]:
    """A client of the simulator's default campaign, at the simulator's rate."""
    async with PostmanClient(
        api_key=postman_simulator.api_key,
        campaign_id=postman_simulator.campaign_id,
        base_url=postman_simulator.base_url,
        rate_limit=postman_simulator.rate_limit,
    ) as client:
        yield client


_postman_simulator.__name__ = "postman_simulator"
_postman_client.__name__ = "postman_client"
postman_simulator = _async_fixture(_postman_simulator)
postman_client = _async_fixture(_postman_client)
