"""IDs whose retry may have been applied (outcome unknown after the POST, cancelled while
the POST was in flight) are listed under their own heading, never under "feed these back",
and never written to the resume file: re-feeding them could POST a second retry. Judged
against the simulator's own record of every POST it processed."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from postman_async import cli
from postman_async.testing import SimulatorProcess

from ..helpers import wait_until
from .test_cli import run

FEED_BACK = "not retried (feed these back with --ids-file)"
UNKNOWN = "outcome unknown: the retry may have been applied"
TITLES = (FEED_BACK, UNKNOWN, "not retried (errors another run will not fix)", "retry run")


def sections(text: str) -> dict[str, list[str]]:
    """The IDs (first column) printed under each table title."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        title = next((t for t in TITLES if line.startswith(t)), None)
        if title is not None:
            current = found.setdefault(title, [])
        elif current is not None and line.startswith("message_"):
            current.append(line.split()[0])
    return found


def posts(sim: SimulatorProcess) -> dict[str, int]:
    url = sim.base_url.replace("/api/v2", "/__simulator__/stats")
    with urllib.request.urlopen(f"{url}?campaign={sim.campaign_id}&posts=1") as answer:
        retries: dict[str, int] = json.loads(answer.read())["posts"]["retries"]
    return retries


#: The retry POSTs that reached the simulator (processed or not), in its per-route counts.
RETRY_ROUTE = "POST /api/v2/campaigns/{campaign_id}/messages/{message_id}/retry"
#: What the CLI prints when it handled the first Ctrl-C.
STOPPING = "stopping: finishing the calls in flight"


def all_processed(sim: SimulatorProcess) -> bool:
    """Every retry POST that reached the simulator has been processed."""
    stats = sim.stats(posts=True)
    return stats["byRoute"].get(RETRY_ROUTE, 0) == sum(stats["posts"]["retries"].values())


def private(path: Path) -> bool:
    return stat.S_IMODE(path.stat().st_mode) == 0o600


def test_outcome_unknown_ids_get_their_own_heading(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every POST answers 5xx and so does the read-back: each retry's outcome is unknown."""
    ids_file, report = tmp_path / "ids.txt", tmp_path / "report.json"
    with SimulatorProcess(
        "--rate-limit", "1000", "--server-error-rate", "1", "--failed-messages", "3",
        "--ids-out", str(ids_file),
    ) as sim:  # fmt: skip
        monkeypatch.setenv("POSTMAN_API_KEY", sim.api_key)
        monkeypatch.setenv("POSTMAN_CAMPAIGN_ID", sim.campaign_id)
        monkeypatch.setenv("POSTMAN_BASE_URL", sim.base_url)
        ids = ids_file.read_text().split()
        argv = ["retry", "--ids-file", str(ids_file), "--max-retries", "0", "--rate-limit", "1000"]
        code, out, err = run(capsys, *argv, "--report", str(report))
        assert code == cli.EXIT_PARTIAL, err
        printed = sections(out)
        assert sorted(printed[UNKNOWN]) == sorted(ids)
        assert FEED_BACK not in printed
        assert "settle" in out and "do NOT feed these back" in out
        data = json.loads(report.read_text())
        assert private(report) and data["summary"]["uncertain"] == 3
        assert all(r["uncertain"] for r in data["results"])
        code, out, _ = run(capsys, *argv, "--json")
        assert json.loads(out)["summary"]["uncertain"] == 3


def test_an_aborted_run_keeps_posted_ids_out_of_the_resume_file(tmp_path: Path) -> None:
    """Two Ctrl-Cs while answers are slow: the POSTs in flight are cancelled (the server has
    processed them) and the workers still waiting for a token are cancelled before their
    POST. Only the latter, and the IDs never taken, go to the resume file."""
    ids_file, resume, report = tmp_path / "ids.txt", tmp_path / "left.txt", tmp_path / "r.json"
    with SimulatorProcess(
        "--rate-limit", "1000", "--latency", "2", "--failed-messages", "20",
        "--ids-out", str(ids_file),
    ) as sim:  # fmt: skip
        env = {
            **os.environ,
            "POSTMAN_API_KEY": sim.api_key,
            "POSTMAN_CAMPAIGN_ID": sim.campaign_id,
            "POSTMAN_BASE_URL": sim.base_url,
        }
        argv = [sys.executable, "-m", "postman_async", "retry", "--rate-limit", "4"]
        argv += ["--concurrency", "6", "--ids-file", str(ids_file)]
        argv += ["--resume", str(resume), "--report", str(report)]
        err_file = tmp_path / "stderr.txt"
        with open(err_file, "w") as stderr:  # the child keeps its own copy
            proc = subprocess.Popen(
                argv,
                env=env,
                cwd=tmp_path,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
            )
        wait_until(lambda: sum(posts(sim).values()) >= 2, "two retry POSTs processed")
        proc.send_signal(signal.SIGINT)  # stop taking IDs ...
        wait_until(lambda: STOPPING in err_file.read_text(), "the first Ctrl-C to be handled")
        proc.send_signal(signal.SIGINT)  # ... and abort the calls in flight
        out, _ = proc.communicate(timeout=30)
        err = err_file.read_text()
        assert proc.returncode == cli.EXIT_INTERRUPTED, err
        # A POST written just before the abort: the server has it once it arrived and was
        # processed (two reads in a row: it reached the server before the first).
        wait_until(lambda: all_processed(sim) and all_processed(sim), "every POST processed")
        posted = {i for i, n in posts(sim).items() if n}
    ids = ids_file.read_text().split()
    left = resume.read_text().split()
    printed = sections(out)
    results = {r["messageId"]: r for r in json.loads(report.read_text())["results"]}
    assert posted and posted <= set(printed[UNKNOWN])
    assert not posted & set(left)  # resuming never POSTs any of them again
    assert not posted & set(printed.get(FEED_BACK, []))
    assert all(results[i].get("uncertain") for i in posted)
    never_posted = [
        i for i, r in results.items() if r["outcome"] == "cancelled" and not r.get("uncertain")
    ]
    assert never_posted, "workers waiting for a token were cancelled before their POST"
    assert not posted & set(never_posted)
    assert sorted(left) == sorted(i for i in ids if i not in results or i in never_posted)
    assert private(resume) and private(report)


def test_a_bad_line_in_piped_ids_stops_the_command_before_any_post(tmp_path: Path) -> None:
    """IDs from a pipe are read to their end before the first call (the writer may still be
    spending the budget): a line that cannot be read stops the command there, exit 2 naming
    the line, with no POST sent for the good lines before it."""
    ids_file = tmp_path / "ids.txt"
    with SimulatorProcess(
        "--rate-limit", "1000", "--failed-messages", "1", "--ids-out", str(ids_file),
    ) as sim:  # fmt: skip
        env = {
            **os.environ,
            "POSTMAN_API_KEY": sim.api_key,
            "POSTMAN_CAMPAIGN_ID": sim.campaign_id,
            "POSTMAN_BASE_URL": sim.base_url,
        }
        [message_id] = ids_file.read_text().split()
        argv = [sys.executable, "-m", "postman_async", "retry", "--ids-file", "-"]
        proc = subprocess.Popen(
            [*argv, "--rate-limit", "1000"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, err = proc.communicate(f"{message_id}\n".encode() + b"\xff\xfe\n", timeout=60)
        assert not posts(sim)
    assert proc.returncode == cli.EXIT_INPUT, err
    assert b"stdin: line 2 is not UTF-8 text" in err and b"Traceback" not in err
