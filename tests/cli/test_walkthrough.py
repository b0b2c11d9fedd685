"""The README's worked session, command by command, with the input files it ships
(``examples/people.csv``, ``examples/failed.txt``), against the simulator started as the
README starts it. The simulator's time is stepped (``advance``), never waited for."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from postman_async.testing import SimulatorProcess

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
CLI = f"{sys.executable} -m postman_async"
FAST = "--rate-limit 1000"  # the README runs at the real 10/s; the test need not wait


def sh(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, shell=True, env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def sim() -> Iterator[SimulatorProcess]:
    """The README's simulator (``--rate-limit`` raised for speed)."""
    line = re.search(r"postman-async simulator (--port 8080 [^&\n]*)&", README)
    assert line, "the README's walk-through starts a simulator"
    args = line.group(1).split()[2:]  # without --port 8080
    with SimulatorProcess(*args, "--rate-limit", "1000") as process:
        yield process


@pytest.fixture
def env(sim: SimulatorProcess, tmp_path: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("POSTMAN_")}
    return {
        **environ,
        "POSTMAN_API_KEY": sim.api_key,
        "POSTMAN_CAMPAIGN_ID": sim.campaign_id,
        "POSTMAN_BASE_URL": sim.base_url,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }


def test_the_walkthrough_files_ship_under_examples() -> None:
    for name in ("people.csv", "failed.txt"):
        assert (ROOT / "examples" / name).is_file()
        assert f"examples/{name}" in README


def test_the_readme_pipe_retries_every_failure_of_a_batch_with_more_than_50(
    sim: SimulatorProcess, env: dict[str, str], tmp_path: Path
) -> None:
    """``list --status failure -q | retry --ids-file -`` once stopped at 50 IDs, silently."""
    sent = sh(f"{CLI} send-batch examples/people.csv {FAST}", env)
    assert sent.returncode == 0, sent.stderr
    batch = sent.stdout.strip()
    sim.advance(60)  # past every lifecycle step: each message is final
    failed = {i for i, m in sim.messages(batch).items() if m["status"] == "failure"}
    assert len(failed) > 50

    counted = sh(f"{CLI} list --batch {batch} --status failure -q {FAST} | wc -l", env)
    assert int(counted.stdout) == len(failed), counted.stderr

    table = sh(f"{CLI} list --batch {batch} --status failure {FAST}", env)
    assert table.returncode == 0 and "50 shown" in table.stdout
    more = len(failed) - 50
    assert f"{more} more not shown" in table.stderr and f"--limit {len(failed)}" in table.stderr

    dry = sh(f"{CLI} retry-batch {batch} --dry-run {FAST}", env)
    assert dry.returncode == 0 and f"{len(failed)} failed messages would be retried" in dry.stdout
    assert sim.stats(posts=True)["posts"]["batchRetries"] == {}  # a dry run sends nothing

    piped = sh(
        f"{CLI} list --batch {batch} --status failure -q {FAST}"
        f" | {CLI} retry --ids-file - --format json {FAST}",
        env,
    )
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["summary"]["counts"]["retried"] == len(failed)
    retries = sim.stats(posts=True)["posts"]["retries"]
    assert set(retries) == failed and set(retries.values()) == {1}  # each once, every one

    report = tmp_path / "settle.json"
    settled = sh(f"{CLI} settle --batch {batch} --report {report} {FAST}", env)
    assert settled.returncode == 0, settled.stderr
    assert json.loads(report.read_text())["unsettled"] == []


def test_the_readme_retry_of_failed_txt(sim: SimulatorProcess, env: dict[str, str]) -> None:
    """``examples/failed.txt`` holds the IDs of the simulator's ``--failed-messages 100``."""
    shipped = [
        line
        for line in (ROOT / "examples/failed.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert set(shipped) == {i for i, m in sim.messages().items() if m["status"] == "failure"}
    done = sh(f"{CLI} retry --ids-file examples/failed.txt --format json {FAST}", env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["summary"]["counts"]["retried"] == 100


def test_the_readme_pipe_stays_within_the_budget(tmp_path: Path) -> None:
    """Two processes share the campaign in ``list ... -q | retry --ids-file -``: the retry
    reads its input to the end, then lets the lister's second pass before its first call."""
    with SimulatorProcess("--rate-limit", "10", "--failed-messages", "15") as sim:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("POSTMAN_")},
            "POSTMAN_API_KEY": sim.api_key,
            "POSTMAN_CAMPAIGN_ID": sim.campaign_id,
            "POSTMAN_BASE_URL": sim.base_url,
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
        }
        rate = "--rate-limit 10"  # the README's real rate
        piped = sh(
            f"{CLI} list --status failure -q {rate}"
            f" | {CLI} retry --ids-file - --format json {rate}",
            env,
        )
        assert piped.returncode == 0, piped.stderr
        assert json.loads(piped.stdout)["summary"]["counts"]["retried"] == 15
        stats = sim.stats()
    assert stats["throttled"] == 0 and stats["maxPerSecond"] <= 10, stats
