"""Every ```python block of the README runs, against the simulator, so examples cannot rot.

The blocks use ``KEY``, ``CAMPAIGN`` and ``FAILED_IDS`` as a reader would use their own; the
harness provides them and points the key's default environment at a simulator process.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from postman_async import client as client_module
from postman_async.testing import SimulatorProcess

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SimulatorProcess, list[str]]]:
    ids_file = tmp_path_factory.mktemp("readme") / "ids.txt"
    with SimulatorProcess(
        "--rate-limit",
        "1000",
        "--time-scale",
        "100",
        "--failed-messages",
        "40",
        "--ids-out",
        str(ids_file),
    ) as process:
        yield process, ids_file.read_text().split()


def test_readme_has_runnable_blocks() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(
    index: int, sim: tuple[SimulatorProcess, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    process, failed = sim
    monkeypatch.setattr(client_module, "default_base_url", lambda key: process.base_url)
    namespace = {
        "KEY": process.api_key,
        "CAMPAIGN": process.campaign_id,
        "FAILED_IDS": failed[index * 10 : (index + 1) * 10],
        "__name__": "readme",
    }
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), namespace)
