"""No CLI output, on any error path reachable without a server, holds a URL's password or
the API key: unreachable Redis and base URLs with credentials, bad key and IDs files,
invalid arguments, --help with a Redis URL in the environment, and an internal error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from postman_async import cli
from postman_async.testing.process import free_port

SECRET = "hunter2SECRET"
KEY = "key_test_PLANTEDKEY123"
LEAKS = (SECRET, KEY, "PLANTEDKEY123")


def leaked(text: str) -> list[str]:
    return [secret for secret in LEAKS if secret in text]


def cases(tmp_path: Path) -> list[tuple[list[str], dict[str, str]]]:
    dead = free_port()  # nothing listens here
    redis = f"redis://:{SECRET}@127.0.0.1:{dead}/0"
    user_redis = f"redis://worker:{SECRET}@127.0.0.1:{dead}/0"
    base = f"https://user:{SECRET}@127.0.0.1:{dead}/api/v2"
    bad_key = tmp_path / "bad.key"
    bad_key.write_bytes(f"key_test_{SECRET}\xff".encode("latin-1"))
    spaced_key = tmp_path / "spaced.key"
    spaced_key.write_text(f"key_test_{SECRET} {SECRET}\n")
    bad_ids = tmp_path / "ids.txt"
    bad_ids.write_bytes(f"message_1\n{SECRET}\xff\n".encode("latin-1"))
    ids = tmp_path / "ok.txt"
    ids.write_text("message_1\n")
    api = ["--campaign", "campaign_1", "--max-retries", "0"]
    unreachable = f"http://127.0.0.1:{dead}/api/v2"
    in_env = {"POSTMAN_ASYNC_REDIS_URL": redis}
    worker_env = {"POSTMAN_CAMPAIGN_ID": "c1", "POSTMAN_BASE_URL": unreachable}
    return [
        (["job", "status", "x", "--redis", redis], {}),
        (["job", "status", "x", "--redis", user_redis], {}),
        (["job", "cancel", "x"], in_env),
        (["job", "report", "x", "--out", str(tmp_path / "out.ndjson"), "--redis", redis], {}),
        (["job", "submit", "j", "--ids-file", str(ids), "--campaign", "c", "--redis", redis], {}),
        (["job", "submit", "j", "--ids-file", "/dev/zero", "--campaign", "c"], in_env),
        (["job", "status", "--help"], in_env),
        (["job", "worker", "--redis", redis], worker_env),
        (["status", "message_1", "--base-url", base, *api], {}),
        (["status", "message_1", "--base-url", base.replace("/api/v2", "/x"), *api], {}),
        (["list", *api], {"POSTMAN_BASE_URL": base}),
        (["retry", "message_1", "--base-url", f"ftp://u:{SECRET}@h/api/v2", *api], {}),
        (["retry", "message_1", "--base-url", unreachable, *api], {}),
        (["send", "6591234567", "--value", "body=x", "--base-url", unreachable, *api], {}),
        (["status", "message_1", "--api-key-file", str(bad_key), *api], {}),
        (["status", "message_1", "--api-key-file", str(spaced_key), *api], {}),
        (["status", "message_1", *api], {"POSTMAN_API_KEY": f"{KEY}\r\nX-Injected: {SECRET}"}),
        (["retry", "--ids-file", str(bad_ids), *api], {"POSTMAN_BASE_URL": unreachable}),
        (["status", "message_1", "--format", redis, *api], {}),
        (["retry", "message_1", "--concurrency", redis, *api], {}),
        (["status", redis, *api], {"POSTMAN_BASE_URL": unreachable}),
        (["nonsense", redis], {}),
        # Passwords with an unencoded '#', '/' or '?': a library that cannot parse the URL
        # quotes a piece of the password ("Port could not be cast ... as 'hunter2'").
        (["job", "status", "x"], {"POSTMAN_ASYNC_REDIS_URL": f"redis://u:{SECRET}#x@h:1/0"}),
        (["job", "status", "x", "--redis", f"redis://u:{SECRET}/x@127.0.0.1:1/0"], {}),
        (["job", "worker", "--redis", f"redis://:{SECRET}?x@127.0.0.1:1/0"], worker_env),
        (
            ["job", "submit", "j", "--ids-file", str(ids), "--campaign", "c"],
            {"POSTMAN_ASYNC_REDIS_URL": f"redis://u:{SECRET}#x@[::1:1/0"},
        ),
    ]


def test_no_error_path_prints_a_password_or_the_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTMAN_")}
    env["POSTMAN_API_KEY"] = KEY
    runs = []
    for argv, extra in cases(tmp_path):
        proc = subprocess.Popen(
            [sys.executable, "-m", "postman_async", *argv],
            env={**env, **extra},
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        runs.append((argv, proc))
    printed: list[tuple[list[str], int, str]] = []
    for argv, proc in runs:  # every process is waited for (or killed) before any assert
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        printed.append((argv, proc.returncode, out + err))
    for argv, _, text in printed:
        assert not leaked(text), f"{argv}:\n{text}"
        assert text, argv  # each said something
    codes = {code for _, code, _ in printed}
    assert {cli.EXIT_INPUT, cli.EXIT_NETWORK} <= codes
    for argv, code, text in printed[-4:]:  # malformed Redis URLs: refused as bad input
        assert code == cli.EXIT_INPUT and "malformed Redis URL" in text, (argv, text)


def test_an_internal_error_is_printed_with_credentials_masked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTMAN_API_KEY", KEY)

    async def broken(*args: object) -> int:
        raise RuntimeError(f"cannot use redis://:{SECRET}@10.0.0.1:6379/0 with {KEY}")

    monkeypatch.setitem(cli.COMMANDS, "status", broken)
    code = cli.main(["status", "message_1"])
    err = capsys.readouterr().err
    assert code == cli.EXIT_OTHER
    assert "Traceback" in err and "redis://:***@10.0.0.1:6379/0" in err
    assert not leaked(err)


def test_each_layer_masks_on_its_own(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error's description, and the top-level printer for any other error it prints."""
    from postman_async.cli._exit import CliError, describe

    redis = f"redis://:{SECRET}@10.0.0.1:6379/0"
    assert not leaked(describe(CliError(f"Redis at {redis}: refused")))

    async def failing(*args: object) -> int:
        raise OSError(f"cannot write to {redis}")  # printed as it is, not described

    monkeypatch.setenv("POSTMAN_API_KEY", KEY)
    monkeypatch.setitem(cli.COMMANDS, "status", failing)
    assert cli.main(["status", "message_1"]) == cli.EXIT_OTHER
    err = capsys.readouterr().err
    assert "redis://:***@10.0.0.1" in err and not leaked(err)
