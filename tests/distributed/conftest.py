"""A real redis-server (Debian's package; .ci/run installs it when missing) on a free
loopback port, persistence off, stopped by its PID."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from ..redis_server import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing: .ci/run should have installed it")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer()
    server.start()
    yield server
    server.remove()
