"""CLI tests keep what the CLI learns between runs (``_state_file``) in their own cache
directory, never the user's: one test's learned attempt cap must not steer another's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """``XDG_CACHE_HOME`` for this test (and the processes it starts)."""
    with pytest.MonkeyPatch.context() as patch:
        cache: Path = tmp_path_factory.mktemp("cache")
        patch.setenv("XDG_CACHE_HOME", str(cache))
        yield
