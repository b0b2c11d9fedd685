"""The ``postman-async`` command line.

``demo`` and ``simulator`` need no API key. The other commands read the key from
``POSTMAN_API_KEY`` (or ``--api-key-file``), the campaign from ``POSTMAN_CAMPAIGN_ID`` (or
``--campaign``), and take ``--base-url`` for the test environment. Every command prints
tables for people, or ``--format json|tsv`` for scripts, and exits with a documented code
(``postman-async --help``): 0 only when everything asked for was done.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from .. import errors
from .._console import Output
from .._redact import redact_passwords, redact_text, url_passwords
from ..reports import RetryReport
from . import _parser
from ._basic import cmd_demo, cmd_list, cmd_send, cmd_send_batch, cmd_simulator, cmd_status
from ._batch import cmd_retry_batch
from ._common import output
from ._exit import (
    EXIT_AUTH,
    EXIT_BUDGET,
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_NETWORK,
    EXIT_NOT_FIRED,
    EXIT_NOT_FOUND,
    EXIT_OTHER,
    EXIT_PARTIAL,
    CliError,
    describe,
    exit_code,
)
from ._jobs import cmd_job, run_worker
from ._retry import cmd_retry
from ._settling import cmd_settle

__all__ = [
    "EXIT_AUTH",
    "EXIT_BUDGET",
    "EXIT_INPUT",
    "EXIT_INTERRUPTED",
    "EXIT_NETWORK",
    "EXIT_NOT_FIRED",
    "EXIT_NOT_FOUND",
    "EXIT_OTHER",
    "EXIT_PARTIAL",
    "CliError",
    "main",
]

Command = Callable[[argparse.Namespace, Output], Coroutine[Any, Any, int]]
COMMANDS: dict[str, Command] = {
    "demo": cmd_demo,
    "send": cmd_send,
    "send-batch": cmd_send_batch,
    "status": cmd_status,
    "list": cmd_list,
    "retry": cmd_retry,
    "retry-batch": cmd_retry_batch,
    "settle": cmd_settle,
    "simulator": cmd_simulator,
    "job": cmd_job,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser.build().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_INPUT
    if getattr(args, "key_in_argv", None) is not None:
        _error(
            "the API key is not taken on the command line (it would show in `ps` and logs): "
            "set POSTMAN_API_KEY or use --api-key-file"
        )
        return EXIT_INPUT
    out = output(args)
    try:
        if args.command == "job" and args.job_command == "worker":
            return run_worker(args)
        return _found_at_base_url(args, asyncio.run(COMMANDS[args.command](args, out)))
    except KeyboardInterrupt:  # a command without its own handler (they read before they POST)
        out.line("interrupted; run the command again to continue")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader stopped early (`| head`): nothing to report
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (errors.PostmanError, CliError) as exc:
        _error(describe(exc))
        partial = getattr(exc, "report", None)
        if isinstance(partial, RetryReport) and len(partial):
            _error(f"done before stopping: {partial.summary()}")
        return _found_at_base_url(args, exit_code(exc))
    except OSError as exc:
        _error(str(exc))
        return EXIT_OTHER
    except Exception:  # a bug: its traceback, with any credential it quotes masked
        _error("internal error; please report it with this traceback:")
        text = redact_text(traceback.format_exc(), _secrets())
        print(redact_passwords(text, _passwords(argv)), end="", file=sys.stderr)
        return EXIT_OTHER


def _found_at_base_url(args: argparse.Namespace, code: int) -> int:
    """Nothing found at a base URL that does not end in /api/v2 (the hint was printed): the
    URL is the bad input (exit 2), not the IDs (exit 6)."""
    if code == EXIT_NOT_FOUND and getattr(args, "suspect_base_url", False):
        _error("nothing was found: the base URL is wrong (it must end in /api/v2)")
        return EXIT_INPUT
    return code


def _error(text: str) -> None:
    """Print an error line on stderr, with every URL credential (``scheme://user:pw@``),
    secret query parameter and the API key masked, whatever produced the text."""
    text = redact_passwords(redact_text(text, _secrets()), _passwords(None))
    print(f"postman-async: {text}", file=sys.stderr)


def _passwords(argv: Sequence[str] | None) -> list[str]:
    """The passwords of the URLs this run was given (arguments and environment)."""
    given = list(sys.argv[1:] if argv is None else argv)
    env = [os.environ.get(name) for name in ("POSTMAN_ASYNC_REDIS_URL", "POSTMAN_BASE_URL")]
    return url_passwords(*given, *env)


def _secrets() -> list[str | None]:
    return [os.environ.get("POSTMAN_API_KEY")]
