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


STATUS = "(created|sending|sent_to_telco|success|failure|accepted_by_telco)"
SUMMARY = r"10 messages, retried=10, duplicates=0, calls=10, elapsed=\d+\.\ds\n"
#: what each block prints, in full (its IDs and the lifecycle's pace aside)
EXPECTED = [
    rf"message_[0-9a-f-]{{36}} created\n{STATUS} 1\n{SUMMARY}",
    rf"6591234567 {STATUS} 1\n6598765432 {STATUS} 1\n",  # in any order (compared sorted)
    SUMMARY,  # every ID retried: nothing else is printed
    "",  # its checks are asserts
]


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
    assert len(BLOCKS) == len(EXPECTED)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(
    index: int,
    sim: tuple[SimulatorProcess, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
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
    printed = capsys.readouterr().out
    if index == 1:  # a listing's order is the server's
        printed = "".join(sorted(printed.splitlines(keepends=True)))
    assert re.fullmatch(EXPECTED[index], printed), (index, printed)
