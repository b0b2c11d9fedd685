"""The postman-async CLI against the standalone simulator (a child process)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from postman_async import cli
from postman_async.testing import SimulatorProcess

from ..helpers import wait_until


@pytest.fixture(scope="module")
def ids_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli") / "failed.txt"


@pytest.fixture(scope="module")
def sim(ids_file: Path) -> Iterator[SimulatorProcess]:
    with SimulatorProcess(
        "--rate-limit",
        "1000",
        "--time-scale",
        "100",
        "--failed-messages",
        "12",
        "--ids-out",
        str(ids_file),
    ) as process:
        yield process


@pytest.fixture
def env(sim: SimulatorProcess, monkeypatch: pytest.MonkeyPatch) -> SimulatorProcess:
    monkeypatch.setenv("POSTMAN_API_KEY", sim.api_key)
    monkeypatch.setenv("POSTMAN_CAMPAIGN_ID", sim.campaign_id)
    monkeypatch.setenv("POSTMAN_BASE_URL", sim.base_url)
    return sim


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_send_status_list(env: SimulatorProcess, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "send", "+65 9123 4567", "--value", "body=Hello", "--json", "--rate-limit", "1000"
    )
    assert code == 0
    sent = json.loads(out)
    assert sent["recipient"] == "6591234567" and sent["latestStatus"] == "created"
    code, out, _ = run(capsys, "status", sent["id"], "--json")
    assert code == 0 and json.loads(out)["messages"][0]["id"] == sent["id"]
    code, out, _ = run(capsys, "status", sent["id"])
    assert code == 0 and sent["id"] in out and "attempts" in out
    code, out, _ = run(capsys, "list", "--search", "91234567", "--json")
    assert code == 0 and sent["id"] in [m["id"] for m in json.loads(out)]
    code, out, _ = run(capsys, "list", "--limit", "3")
    assert code == 0 and "3 shown" in out


def test_retry_ids_file_and_args(
    env: SimulatorProcess, ids_file: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ids = ids_file.read_text().split()
    report_path = tmp_path / "report.json"
    code, out, _ = run(
        capsys, "retry", "--ids-file", str(ids_file), ids[0], "--json", "--report", str(report_path)
    )
    assert code == 0
    summary = json.loads(out)["summary"]
    assert summary["counts"]["retried"] == 12 and summary["duplicates"] == 1
    assert json.loads(report_path.read_text())["summary"]["messages"] == 12
    code, out, _ = run(capsys, "retry", ids[0])  # now created, not failed: skipped
    # Nothing was done: the server refused the retry with a 400 (bad input), not "partial".
    assert code == cli.EXIT_INPUT and "skipped_not_in_failure" in out


def test_retry_batch_and_settle(
    env: SimulatorProcess, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import asyncio

    from postman_async import PostmanClient

    async def make_batch() -> str:
        async with PostmanClient(
            api_key=env.api_key, campaign_id=env.campaign_id, base_url=env.base_url, rate_limit=1000
        ) as client:
            rows = [
                {"recipient": r, "language": "english", "body": "x"}
                for r in ("6591234567", "6511112222", "6511111111")
            ]
            return (await client.send_batch(rows)).batch_id

    batch_id = asyncio.run(make_batch())
    env.advance(60)  # past every lifecycle step: each message is final
    code, out, err = run(capsys, "retry-batch", batch_id, "--dry-run")  # sends nothing
    assert code == 0 and "2 failed messages would be retried" in out
    assert "1 failed with errors a retry will not fix (recipient_invalid 1)" in out
    code, _, err = run(capsys, "retry-batch", batch_id)  # not a terminal: must say --yes
    assert code == cli.EXIT_INPUT and "pass --yes" in err
    code, out, _ = run(capsys, "retry-batch", batch_id, "--json", "--yes")
    assert code == 0 and json.loads(out)["fired"] is True
    code, out, _ = run(capsys, "settle", "--batch", batch_id, "--json")
    assert code == 0
    settled = json.loads(out)
    assert settled["unsettled"] == [] and settled["delivered"] == 1
    assert settled["failedForGood"] == {"recipient_unavailable": 1, "recipient_invalid": 1}
    code, _, err = run(capsys, "retry-batch", "batch_unknown")
    assert code == cli.EXIT_NOT_FOUND and "not found" in err.lower()


@pytest.mark.parametrize(
    ("argv", "expected", "fragment"),
    [
        (["status", "bad/id"], cli.EXIT_INPUT, "invalid message_id"),
        (["send", "91234567", "--value", "body=x"], cli.EXIT_INPUT, "country code"),
        (["send", "6591234567", "--value", "body"], cli.EXIT_INPUT, "NAME=TEXT"),
        (["retry"], cli.EXIT_INPUT, "give message IDs"),
        (["retry", "--ids-file", "/nonexistent/ids.txt"], cli.EXIT_INPUT, "cannot read"),
        (["status", "message_nope"], cli.EXIT_NOT_FOUND, "message_nope: not found"),
        (["retry", "--report", "/nonexistent/dir/r.json", "m1"], cli.EXIT_INPUT, "does not exist"),
        (["send", "6591234567", "--rate-limit", "inf"], cli.EXIT_INPUT, "finite number"),
        (["send", "6591234567", "--value", "body=a", "--value", "body=b"], 2, "given twice"),
    ],
)
def test_error_paths_one_line(
    env: SimulatorProcess,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    expected: int,
    fragment: str,
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == expected
    assert fragment in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_bad_key_and_missing_configuration(
    sim: SimulatorProcess, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTMAN_BASE_URL", sim.base_url)
    monkeypatch.setenv("POSTMAN_CAMPAIGN_ID", sim.campaign_id)
    monkeypatch.setenv("POSTMAN_API_KEY", "key_test_wrong")
    code, _, err = run(capsys, "list")
    assert code == cli.EXIT_AUTH and "invalid_api_key_provided" in err
    assert "key_test_wrong" not in err
    monkeypatch.delenv("POSTMAN_API_KEY")
    code, _, err = run(capsys, "list")
    assert code == cli.EXIT_INPUT and "POSTMAN_API_KEY" in err


def test_no_network(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from postman_async.testing.process import free_port

    monkeypatch.setenv("POSTMAN_API_KEY", "key_test_x")
    code, _, err = run(
        capsys,
        "status",
        "message_1",
        "--campaign",
        "campaign_1",
        "--base-url",
        f"http://127.0.0.1:{free_port()}/api/v2",
        "--max-retries",
        "0",
    )
    assert code == cli.EXIT_NETWORK
    assert "connection to 127.0.0.1:" in err and "Connection refused" in err


def test_console_script_and_module_entry(env: SimulatorProcess) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "postman_async", "list", "--json", "--limit", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)
    bad = subprocess.run(
        [sys.executable, "-m", "postman_async", "status", "x y"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == cli.EXIT_INPUT and "Traceback" not in bad.stderr


def test_ctrl_c_saves_what_is_left_and_resume_posts_nothing_twice(tmp_path: Path) -> None:
    """SIGINT: the calls in flight finish, the partial report and JSON are written, and the
    IDs not started go to the resume file; the resumed run retries exactly those."""
    import os
    import signal

    ids_file, resume = tmp_path / "ids.txt", tmp_path / "left.txt"
    with SimulatorProcess(
        "--rate-limit", "50", "--failed-messages", "100", "--ids-out", str(ids_file)
    ) as slow:
        env = {
            **os.environ,
            "POSTMAN_API_KEY": slow.api_key,
            "POSTMAN_CAMPAIGN_ID": slow.campaign_id,
            "POSTMAN_BASE_URL": slow.base_url,
        }
        argv = [sys.executable, "-m", "postman_async", "retry", "--rate-limit", "50", "--json"]
        argv += ["--resume", str(resume), "--report", str(tmp_path / "partial.json")]
        proc = subprocess.Popen(
            [*argv, "--ids-file", str(ids_file)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # As from a terminal: a runner started in the background may ignore SIGINT, and
            # the child would inherit that.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        wait_until(lambda: slow.stats()["retryPosts"] >= 5, "the run's first five retry POSTs")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == cli.EXIT_INTERRUPTED, err
        assert "Traceback" not in err and f"--resume {resume}" in err
        first_run = slow.stats(posts=True)["posts"]["retries"]  # the calls in flight finished
        printed = json.loads(out)["summary"]  # partial JSON on stdout
        partial = json.loads((tmp_path / "partial.json").read_text())
        assert printed["interrupted"] and partial["summary"]["interrupted"]
        # Exactly the IDs the server saw a POST for have a result (each retried); every
        # other ID, and only those, is in the resume file.
        done = {r["messageId"]: r["outcome"] for r in partial["results"]}
        assert done == dict.fromkeys(first_run, "retried")
        assert 5 <= len(done) < 100 and partial["summary"]["messages"] == len(done)
        all_ids = ids_file.read_text().split()
        assert sorted(resume.read_text().split()) == sorted(set(all_ids) - set(done))
        again = subprocess.run(
            [*argv, "--ids-file", str(ids_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )  # --resume wins over the IDs given: it continues from the file
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["summary"]["counts"]["retried"] == 100 - len(done)
        assert not resume.exists()
        posts = slow.stats(posts=True)["posts"]["retries"]
    assert sorted(posts) == sorted(all_ids)
    assert set(posts.values()) == {1}  # no ID POSTed twice across the two runs


def test_a_reader_that_stops_early_ends_the_listing_quietly(env: SimulatorProcess) -> None:
    """`list ... | head`: the reader is gone before the listing is written (its end of the
    pipe is closed at once): exit 0, nothing on stderr, not "another API error"."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "postman_async", "list", "--status", "failure", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert err == ""


def test_a_key_on_the_command_line_is_refused_without_echoing_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    key = "f728b4fa42485e3a0a5d2f346baa9455"
    for argv in (["--api-key", key], [f"--api-key={key}"], ["--api-key-fil", key]):
        code, out, err = run(capsys, "status", "message_x", *argv)
        assert code == cli.EXIT_INPUT and key not in out + err, (argv, err)
