"""``postman-async job ...`` as an operator runs it: submit, status, report, and the errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from postman_async import cli as cli_module
from postman_async.jobs import JobStore

from ..redis_server import RedisServer
from .harness import Sim, Workers, assert_against_ground_truth, wait_finished


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "postman_async", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


async def test_submit_status_report_and_errors(
    redis: aioredis.Redis, job_redis: RedisServer, simulator: Sim, workers: Workers, tmp_path: Path
) -> None:
    workers.start()
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("".join(f"{i},1\n" for i in simulator.ids) + "# a comment\nbad id\n")
    where = ("--redis", job_redis.url)
    submitted = await asyncio.to_thread(
        cli,
        "job",
        "submit",
        "cli-1",
        "--ids-file",
        str(ids_file),
        "--campaign",
        simulator.campaign_id,
        "--rate-limit",
        "1000",
        "--chunks",
        "4",
        "--json",
        *where,
    )
    assert submitted.returncode == 0, submitted.stderr
    assert json.loads(submitted.stdout)["distinct"] == len(simulator.ids) + 1
    await wait_finished(JobStore(redis, "cli-1"))
    status = await asyncio.to_thread(cli, "job", "status", "cli-1", "--json", *where)
    assert status.returncode == 0 and json.loads(status.stdout)["state"] == "finished"
    human = await asyncio.to_thread(cli, "job", "status", "cli-1", *where)
    assert "finished" in human.stdout and f"{len(simulator.ids) + 1} of" in human.stdout
    out = tmp_path / "results.ndjson"
    report = await asyncio.to_thread(cli, "job", "report", "cli-1", "--out", str(out), *where)
    assert report.returncode == 0, report.stderr
    assert out.stat().st_mode & 0o777 == 0o600  # results hold recipients: owner only
    results = {r["messageId"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert results["bad id"]["outcome"] == "error"
    del results["bad id"]
    assert_against_ground_truth(results, set(simulator.ids), await simulator.stats())
    assert await redis.ttl("postman_async:job:{cli-1}:meta") > 0  # expires after the report

    missing = await asyncio.to_thread(cli, "job", "status", "nope", *where)
    assert missing.returncode == 6 and "no job 'nope'" in missing.stderr  # nothing found
    down = await asyncio.to_thread(
        cli, "job", "status", "cli-1", "--redis", "redis://127.0.0.1:1/0"
    )
    assert down.returncode == 8 and "Redis at redis://127.0.0.1:1/0" in down.stderr  # network


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["report", "j", "--out", "x", "--expire-after", "-5"], "must be a finite number >= 0"),
        (["report", "j", "--out", "x", "--expire-after", "inf"], "must be a finite number >= 0"),
        (["worker", "--concurrency", "0"], "--concurrency: must be at least 1"),
        (["worker", "--supervise-every", "0"], "--supervise-every: must be a finite number > 0"),
    ],
)
def test_job_numbers_out_of_range_are_refused_before_redis_is_reached(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A negative expiry deleted the job's keys at once; a worker with 0 concurrency ran
    unlimited tasks and one supervising every 0 s busy-looped on Redis."""
    assert cli_module.main(["job", *argv, "--redis", "redis://127.0.0.1:1"]) == 2
    assert message in capsys.readouterr().err


def test_a_job_command_without_redis_py_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A plain ``pip install postman-async``: the job commands name the extra to install
    (they said only "No module named 'redis'")."""
    for name in ("redis", "redis.asyncio", "redis.exceptions"):
        monkeypatch.setitem(sys.modules, name, None)
    assert cli_module.main(["job", "status", "j", "--redis", "redis://127.0.0.1:1"]) == 2
    assert 'pip install "postman-async[redis]"' in capsys.readouterr().err


@pytest.mark.parametrize("db", ["abc", "0/x", "-1"])
def test_a_redis_url_naming_no_database_number_is_refused(
    db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``redis://…/abc`` silently meant database 0."""
    url = f"redis://:hunter2@127.0.0.1:1/{db}"
    assert cli_module.main(["job", "status", "j", "--redis", url]) == 2
    err = capsys.readouterr().err
    assert "malformed Redis URL" in err and "hunter2" not in err
