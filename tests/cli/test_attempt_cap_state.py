"""The attempt cap learned by one CLI run is kept for the next (a private file in the user's
cache directory, keyed by campaign, never the key), and ``retry-batch --dry-run`` says when
its count depends on a cap not learned yet."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from postman_async import _state_file
from postman_async.rules import AttemptCap
from postman_async.testing import SimulatorProcess

CLI = [sys.executable, "-m", "postman_async"]
URL = "https://postman.gov.sg/api/v2"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "postman-async"


def test_kept_per_campaign_private_and_forgotten_when_old(cache: Path) -> None:
    assert _state_file.state_dir() == cache
    _state_file.save_attempt_cap("campaign_a", URL, AttemptCap())  # nothing learned: no file
    assert not cache.exists()
    _state_file.save_attempt_cap("campaign_a", URL, AttemptCap(lower=3, upper=3), now=1000.0)
    _state_file.save_attempt_cap("campaign_b", URL, AttemptCap(lower=4), now=1000.0)
    path = cache / _state_file.CAPS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert _state_file.load_attempt_cap("campaign_a", URL, now=1001.0) == AttemptCap(3, 3)
    assert _state_file.load_attempt_cap("campaign_b", URL, now=1001.0) == AttemptCap(4, None)
    assert _state_file.load_attempt_cap("campaign_c", URL, now=1001.0) == AttemptCap()
    other_host = "https://test.postman.gov.sg/api/v2"
    assert _state_file.load_attempt_cap("campaign_a", other_host, now=1001.0) == AttemptCap()
    late = 1000.0 + _state_file.MAX_AGE + 1
    assert _state_file.load_attempt_cap("campaign_a", URL, now=late) == AttemptCap()
    path.write_text("{not json")
    assert _state_file.load_attempt_cap("campaign_a", URL) == AttemptCap()


def test_home_cache_when_xdg_is_unset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _state_file.state_dir() == tmp_path / ".cache" / "postman-async"


def test_a_cap_learned_by_one_run_is_used_by_the_next(cache: Path, tmp_path: Path) -> None:
    """Five messages at 3 attempts: the first dry run cannot know whether the server allows a
    4th and says so; the batch retry's ``no_failed_batch_messages_to_retry`` teaches the cap;
    the next run, a new process, knows it from the state file."""
    csv = tmp_path / "five.csv"
    csv.write_text("recipient,language,body\n" + "6511112222,english,hello\n" * 5)
    args = ("--rate-limit", "1000", "--time-scale", "100", "--retry-failure-rate", "1")
    with SimulatorProcess(*args, "--max-attempts", "3") as sim:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("POSTMAN_")},
            "POSTMAN_API_KEY": sim.api_key,
            "POSTMAN_CAMPAIGN_ID": sim.campaign_id,
            "POSTMAN_BASE_URL": sim.base_url,
        }

        def cli(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*CLI, *argv, "--rate-limit", "1000"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        batch = cli("send-batch", str(csv)).stdout.strip()
        sim.advance(60)
        for _ in range(2):  # attempts 2 and 3, each failing again
            assert cli("retry-batch", batch).returncode == 0
            sim.advance(60)
        first = cli("retry-batch", batch, "--dry-run")
        assert "5 failed messages would be retried (5 of them have 3 attempts" in first.stdout
        assert "cap is not learned yet" in first.stdout
        refused = cli("retry-batch", batch)
        assert refused.returncode == 5 and "no_failed_batch_messages_to_retry" in refused.stdout
        second = cli("retry-batch", batch, "--dry-run")
        assert "0 failed messages would be retried" in second.stdout, second.stdout
        assert "5 are out of attempts (the server's cap is 3 attempts)" in second.stdout
        assert sim.stats(posts=True)["posts"]["batchRetries"] == {batch: 3}
    path = cache / _state_file.CAPS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert sim.campaign_id in text and sim.api_key not in text
    [entry] = json.loads(text)["campaigns"].values()
    assert (entry["lower"], entry["upper"]) == (3, 3)
