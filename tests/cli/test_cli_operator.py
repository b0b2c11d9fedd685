"""An operator's session, as shell commands: send a batch from a CSV, find its failures,
retry them through a pipe; and the exit codes and checks a script relies on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from postman_async import cli
from postman_async.testing import SimulatorProcess

CLI = f"{sys.executable} -m postman_async"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    args = ("--rate-limit", "1000", "--time-scale", "100", "--failure-rate", "0.5", "--seed", "3")
    with SimulatorProcess(*args) as process:
        yield process


@pytest.fixture
def env(sim: SimulatorProcess, tmp_path: Path) -> dict[str, str]:
    key_file = tmp_path / "key"
    key_file.write_text(sim.api_key + "\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("POSTMAN_")}
    return {
        **environ,
        "POSTMAN_API_KEY_FILE": str(key_file),  # the key never appears in argv
        "POSTMAN_CAMPAIGN_ID": sim.campaign_id,
        "POSTMAN_BASE_URL": sim.base_url,
    }


def sh(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, shell=True, env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def stats(sim: SimulatorProcess) -> dict[str, object]:
    url = sim.base_url.replace("/api/v2", "/__simulator__/stats")
    with urllib.request.urlopen(f"{url}?campaign={sim.campaign_id}&posts=1") as answer:
        data: dict[str, object] = json.loads(answer.read())
        return data


def test_send_batch_then_list_failures_then_retry_them_in_a_pipe(
    sim: SimulatorProcess, env: dict[str, str], tmp_path: Path
) -> None:
    rows = "".join(f"659123{n:04d},english,hello {n}\n" for n in range(20))
    (tmp_path / "people.csv").write_text("recipient,language,body\n" + rows)
    sent = sh(f"{CLI} send-batch people.csv --rate-limit 1000", env, tmp_path)
    assert sent.returncode == 0, sent.stderr
    batch_id = sent.stdout.strip()  # alone on stdout
    assert batch_id.startswith("batch_") and "created from people.csv" in sent.stderr
    sim.advance(60)  # past every lifecycle step: every message is final
    failed = sh(
        f"{CLI} list --batch {batch_id} --status failure -q --rate-limit 1000", env, tmp_path
    )
    failed_ids = failed.stdout.split()
    assert (
        failed.returncode == 0 and failed_ids and all(i.startswith("message_") for i in failed_ids)
    )
    piped = sh(
        f"{CLI} list --batch {batch_id} --status failure -q --rate-limit 1000"
        f" | {CLI} retry --ids-file - --format json --rate-limit 1000",
        env,
        tmp_path,
    )
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["summary"]["counts"]["retried"] == len(failed_ids)
    posts = stats(sim)["posts"]
    assert isinstance(posts, dict) and sorted(posts["acceptedRetries"]) == sorted(failed_ids)
    tsv = sh(
        f"{CLI} list --batch {batch_id} --format tsv --limit 5 --rate-limit 1000", env, tmp_path
    )
    lines = tsv.stdout.splitlines()
    assert lines[0].split("\t")[:3] == ["id", "recipient", "status"] and len(lines) == 6


@pytest.mark.parametrize(
    ("command", "code", "fragment"),
    [
        ("status message_nope", cli.EXIT_NOT_FOUND, "message_nope: not found"),
        ("retry message_nope", cli.EXIT_NOT_FOUND, ""),
        ("settle --batch batch_nope", cli.EXIT_NOT_FOUND, ""),
        ("send 6591234567 --value nobody=x", cli.EXIT_INPUT, "parameter_invalid"),
        ("list --base-url {base}/x --limit 1", cli.EXIT_INPUT, "hint: the API's base URL"),
        ("list --campaign campaign_other --limit 1", cli.EXIT_AUTH, "check that --campaign"),
        ("retry m1 --rate-limit inf", cli.EXIT_INPUT, "finite number"),
        ("retry m1 --report /nonexistent/dir/r.json", cli.EXIT_INPUT, "does not exist"),
        ("retry --resume /nonexistent/dir/left.txt m1", cli.EXIT_INPUT, "does not exist"),
    ],
)
def test_exit_codes_and_checks_before_any_request(
    sim: SimulatorProcess,
    env: dict[str, str],
    tmp_path: Path,
    command: str,
    code: int,
    fragment: str,
) -> None:
    before = stats(sim)["requests"]
    result = sh(f"{CLI} {command.format(base=sim.base_url.removesuffix('/api/v2'))}", env, tmp_path)
    assert result.returncode == code, result.stderr
    assert fragment in result.stderr and "Traceback" not in result.stderr
    if code == cli.EXIT_INPUT and "=" not in command and "--base-url" not in command:
        assert stats(sim)["requests"] == before  # refused before any request


def test_version_and_help_name_the_environment_and_exit_codes(tmp_path: Path) -> None:
    version = sh(f"{CLI} --version", dict(os.environ), tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("postman-async ")
    for command in ("", "retry ", "settle ", "send-batch "):
        helped = sh(f"{CLI} {command}--help", dict(os.environ), tmp_path)
        assert helped.returncode == 0
        assert "POSTMAN_API_KEY" in helped.stdout and "130  interrupted" in helped.stdout
        assert "example" in helped.stdout


def test_a_missing_key_file_is_bad_input(env: dict[str, str], tmp_path: Path) -> None:
    result = sh(f"{CLI} list --api-key-file {tmp_path}/nope", env, tmp_path)
    assert result.returncode == cli.EXIT_INPUT and "cannot read the API key file" in result.stderr
