"""Every row of the README's exit-code table (``postman-async --help`` prints the same), as a
script sees it: the command's exit code. Row 9 (job lost) is in tests/jobs/test_job_data_loss.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from postman_async import PostmanClient, PostmanConnectionError, cli
from postman_async.testing import SimulatorProcess
from postman_async.testing.process import free_port

from ..helpers import wait_until

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
CLI = [sys.executable, "-m", "postman_async"]


@pytest.fixture(scope="module")
def ids_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exit") / "ids.txt"


@pytest.fixture(scope="module")
def sims(ids_file: Path) -> Iterator[dict[str, SimulatorProcess]]:
    """A healthy simulator (its failed messages retry into failure again), one whose every
    answer is a 5xx, and one that allows 1 call per second."""
    ids = ids_file
    fast = ("--rate-limit", "1000", "--time-scale", "100")
    with (
        SimulatorProcess(
            *fast, "--retry-failure-rate", "1", "--failed-messages", "8", "--ids-out", str(ids)
        ) as ok,
        SimulatorProcess(*fast, "--server-error-rate", "1") as broken,
        SimulatorProcess("--rate-limit", "1") as slow,
    ):
        yield {"ok": ok, "broken": broken, "slow": slow}


@pytest.fixture(scope="module")
def failed(sims: dict[str, SimulatorProcess], ids_file: Path) -> list[str]:
    """The healthy simulator's failed messages."""
    return ids_file.read_text().split()


def run(sim: SimulatorProcess, *argv: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("POSTMAN_")}
    env = {
        **environ,
        "POSTMAN_API_KEY": sim.api_key,
        "POSTMAN_CAMPAIGN_ID": sim.campaign_id,
        "POSTMAN_BASE_URL": sim.base_url,
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    return subprocess.run(
        [*CLI, *argv, "--rate-limit", "1000", "--max-retries", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_table_in_the_readme_is_the_one_in_help() -> None:
    for code in (*range(10), 130):
        assert f"\n| {code} |" in README
    helped = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60)
    assert all(f"\n  {code} " in helped.stdout for code in range(10))


@pytest.mark.parametrize(
    ("row", "sim", "argv", "fragment"),
    [
        (0, "ok", ["status", "{id0}"], ""),
        (1, "broken", ["status", "message_x"], "HTTP 5"),
        (2, "ok", ["retry", "bad id"], "error"),
        (2, "ok", ["status", "bad/id"], "invalid message_id"),
        (2, "ok", ["list", "--base-url", "{base}"], "the base URL must end in /api/v2"),
        (2, "ok", ["list", "--base-url", "{base}/x/api/v2"], "no such route"),
        (3, "ok", ["list", "--campaign", "campaign_other"], "check that --campaign"),
        (4, "slow", ["status", "message_a", "message_b", "message_c"], "429"),
        (6, "ok", ["status", "message_nope"], "message_nope: not found"),
        (6, "ok", ["retry", "message_nope"], ""),
        (7, "ok", ["status", "{id0}", "message_nope"], "message_nope: not found"),
        (7, "ok", ["retry", "{id2}", "message_nope"], "retried"),  # one retried, one not
        (8, "ok", ["status", "message_x", "--base-url", "http://127.0.0.1:{port}/api/v2"], ""),
        (8, "ok", ["status", "x", "--base-url", "https://postman.invalid/api/v2"], ""),
    ],
)
def test_each_row(
    sims: dict[str, SimulatorProcess],
    failed: list[str],
    tmp_path: Path,
    row: int,
    sim: str,
    argv: list[str],
    fragment: str,
) -> None:
    process = sims[sim]
    values = {
        "id0": failed[0],
        "id2": failed[2],
        "base": process.base_url.removesuffix("/api/v2"),
        "port": str(free_port()),
    }
    result = run(process, *(a.format(**values) for a in argv), tmp_path=tmp_path)
    assert result.returncode == row, result.stdout + result.stderr
    assert fragment in result.stdout + result.stderr and "Traceback" not in result.stderr
    if row == 2 and argv[0] == "retry":  # an invalid ID is never offered to feed back
        assert "feed these back" not in result.stdout


def test_row_5_a_batch_retry_that_did_not_fire(
    sims: dict[str, SimulatorProcess], tmp_path: Path
) -> None:
    csv = tmp_path / "ok.csv"
    csv.write_text("recipient,language,body\n6591234567,english,hi\n6598765432,english,hi\n")
    ok = sims["ok"]
    batch = run(ok, "send-batch", str(csv), tmp_path=tmp_path).stdout.strip()
    ok.advance(60)  # both delivered: nothing to retry
    result = run(ok, "retry-batch", batch, tmp_path=tmp_path)
    assert result.returncode == cli.EXIT_NOT_FIRED == 5, result.stdout + result.stderr
    assert "no_failed_batch_messages_to_retry" in result.stdout
    assert ok.stats(posts=True)["posts"]["batchRetries"] == {}  # judged from its read


def test_a_name_that_does_not_resolve_is_told_at_once(
    sims: dict[str, SimulatorProcess], tmp_path: Path
) -> None:
    """Once silent for 12.5 s of retries, then ``Unknown error -2``: now one line, no retry."""
    result = run(
        sims["ok"], "status", "m1", "--base-url", "https://postman.invalid/api/v2",
        tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == cli.EXIT_NETWORK
    assert result.stderr.strip().splitlines() == [
        "postman-async: cannot resolve host postman.invalid: Name or service not known "
        "(check --base-url or POSTMAN_BASE_URL)"
    ]


async def test_the_sdk_names_a_host_that_does_not_resolve() -> None:
    async with PostmanClient(
        api_key="key_test_x",
        campaign_id="campaign_1",
        base_url="https://postman.invalid/api/v2",
        max_retries=0,
    ) as client:
        with pytest.raises(PostmanConnectionError) as caught:
            await client.get_message("message_1")
    assert "cannot resolve host postman.invalid: Name or service not known" in str(caught.value)
    assert "Unknown error" not in str(caught.value)


def test_a_retry_where_nothing_could_be_retried_is_bad_input(
    sims: dict[str, SimulatorProcess], failed: list[str], tmp_path: Path
) -> None:
    """Every ID refused by the server (one not in failure, one at the attempt cap): nothing
    was done, so not "partial" (7): the server's 400s make it bad input (2)."""
    ok = sims["ok"]
    at_cap = failed[1]
    for _ in range(2):  # attempts 2 and 3, each failing again
        assert run(ok, "retry", at_cap, tmp_path=tmp_path).returncode == 0
        ok.advance(60)
    sent = run(ok, "send", "6591234567", "--value", "body=hi", "--json", tmp_path=tmp_path)
    delivered = json.loads(sent.stdout)["id"]
    ok.advance(60)  # delivered: not in failure
    result = run(ok, "retry", at_cap, delivered, "--format", "json", tmp_path=tmp_path)
    assert result.returncode == cli.EXIT_INPUT, result.stdout + result.stderr
    assert '"attempts_exhausted": 1' in result.stdout
    assert '"skipped_not_in_failure": 1' in result.stdout


def test_interrupted(tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    with SimulatorProcess(
        "--rate-limit", "20", "--failed-messages", "40", "--ids-out", str(ids)
    ) as sim:
        env = {
            **os.environ,
            "POSTMAN_API_KEY": sim.api_key,
            "POSTMAN_CAMPAIGN_ID": sim.campaign_id,
            "POSTMAN_BASE_URL": sim.base_url,
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
        }
        proc = subprocess.Popen(
            [*CLI, "retry", "--ids-file", str(ids), "--rate-limit", "20"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        wait_until(lambda: sim.stats()["retryPosts"] >= 1, "the first retry POST")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == cli.EXIT_INTERRUPTED == 130, err
    assert "continue with: postman-async retry --resume" in out
