"""The command line's arguments: every value is checked here, before any request is sent."""

from __future__ import annotations

import argparse
import math
import os
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from .._redact import redact_text
from .._version import __version__
from ..environments import ENVIRONMENTS
from ._exit import EXIT_CODES_HELP
from ._jobs import add_job_parser

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

ENVIRONMENT_HELP = """environment:
  POSTMAN_API_KEY        the campaign's API key (or --api-key-file; never put a key in argv)
  POSTMAN_API_KEY_FILE   a file holding the key
  POSTMAN_CAMPAIGN_ID    the campaign (or --campaign)
  POSTMAN_BASE_URL       the API base URL, ending in /api/v2 (default: from the key's prefix)
  POSTMAN_ENVIRONMENT    production, test or loadtest (or --environment)
  POSTMAN_ASYNC_REDIS_URL  Redis for `job` commands (default redis://127.0.0.1:6379/0)"""

EXAMPLES = """examples:
  postman-async simulator --failed-messages 100 --ids-out ids.txt   # a local server to try on
  postman-async send-batch recipients.csv
  postman-async list --batch BATCH_ID --status failure -q > failed.txt
  postman-async retry --ids-file failed.txt --report report.json --resume left.txt
  postman-async settle --batch BATCH_ID
  postman-async list --status failure -q | postman-async retry --ids-file -"""

STATUSES = ("created", "sending", "sent", "sent_to_telco", "success", "failure")


def _number(minimum: float, *, strict: bool) -> type[float]:
    """An argparse type: a finite number above (or at) ``minimum``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        ok = value > minimum if strict else value >= minimum
        if not (ok and math.isfinite(value)):
            sign = ">" if strict else ">="
            raise argparse.ArgumentTypeError(
                f"must be a finite number {sign} {minimum:g}: {text!r}"
            )
        return value

    return parse  # type: ignore[return-value]


def _count(minimum: int) -> type[int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}: {text!r}")
        return value

    return parse  # type: ignore[return-value]


def _writable(path: str) -> str:
    """A file this process can create: checked before any request, not after the work."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"{path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"{path}: not writable")
    if _owned_by_another(path):
        raise argparse.ArgumentTypeError(
            f"{path}: belongs to another user, so it cannot be made private (mode 0600)"
        )
    return path


def _owned_by_another(path: str) -> bool:
    """A regular file that this process could not make 0600 (see ``_files.open_private``)."""
    try:
        info = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and os.geteuid() not in (0, info.st_uid)


class Parser(argparse.ArgumentParser):
    """Usage errors in one line, exit code 2 (bad input). Whatever it prints (usage, help with
    defaults taken from the environment, errors quoting an argument) has URL credentials
    masked."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # No prefixes of long options: `--api-key KEY` must not pass for `--api-key-file`
        # (which would echo the key as a file name).
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):  # name the options, not their values (a key, maybe)
            words = message[len(prefix) :].split()
            shown = [w.split("=", 1)[0] if w.startswith("-") else "<value>" for w in words]
            message = prefix + " ".join(shown)
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        super()._print_message(redact_text(message), file)


positive = _number(0, strict=True)
non_negative = _number(0, strict=False)


def build() -> argparse.ArgumentParser:
    parser = Parser(
        prog="postman-async",
        description="Postman v2 SMS API: send, inspect and retry, without double sends.",
        epilog=f"{ENVIRONMENT_HELP}\n\n{EXIT_CODES_HELP}\n\n{EXAMPLES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"postman-async {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common, api = _shared()
    shared = {"api": [api], "output": [common], "none": []}
    for name, help_, options, example, add_arguments in COMMANDS:
        command = sub.add_parser(
            name,
            parents=shared[options],
            help=help_,
            description=help_,
            epilog=f"example:\n  {example}\n\n{ENVIRONMENT_HELP}\n\n{EXIT_CODES_HELP}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_arguments(command)
    add_job_parser(sub, common, positive)
    return parser


def _send_batch(batch: argparse.ArgumentParser) -> None:
    batch.add_argument(
        "csv_file",
        help="the CSV file, any size (checked whole before anything is sent; split into "
        "files of at most 40 MB, and 20 rows in the test environment)",
    )
    batch.add_argument(
        "--guard-window",
        type=non_negative,
        default=24.0,
        metavar="HOURS",
        help="refuse (exit 2) a file already uploaded as a batch within this many hours, "
        "found by reading back (default 24; 0: no check)",
    )
    batch.add_argument(
        "--again", action="store_true", help="send it even if it was already uploaded"
    )
    batch.add_argument(
        "--max-batch-rows",
        type=_count(1),
        default=None,
        metavar="N",
        help="at most N rows per file (default: 20 in the test environment, else no limit)",
    )


def _status(status: argparse.ArgumentParser) -> None:
    status.add_argument("message_ids", nargs="+", metavar="MESSAGE_ID")


def _shared() -> tuple[Parser, Parser]:
    common = Parser(add_help=False)
    common.add_argument(
        "--format",
        choices=("table", "json", "tsv"),
        default="table",
        help="output: tables for people, JSON (camelCase keys) or TSV for scripts",
    )
    common.add_argument("--json", action="store_true", help="the same as --format json")
    api = Parser(add_help=False, parents=[common])
    api.add_argument(
        "--campaign",
        default=os.environ.get("POSTMAN_CAMPAIGN_ID"),
        help="campaign id (default: $POSTMAN_CAMPAIGN_ID)",
    )
    api.add_argument(
        "--base-url",
        default=os.environ.get("POSTMAN_BASE_URL"),
        help="API base URL ending in /api/v2 (default: $POSTMAN_BASE_URL, else from the key)",
    )
    api.add_argument(
        "--api-key-file",
        default=os.environ.get("POSTMAN_API_KEY_FILE"),
        help="read the API key from this file (default: $POSTMAN_API_KEY)",
    )
    # Taken only to be refused without echoing it: a key in argv shows in `ps` and logs.
    api.add_argument("--api-key", dest="key_in_argv", default=None, help=argparse.SUPPRESS)
    api.add_argument(
        "--environment",
        choices=tuple(ENVIRONMENTS),
        default=os.environ.get("POSTMAN_ENVIRONMENT") or None,
        help="production, test or loadtest (booked in advance; up to 200/s; statuses stay "
        "pending): its base URL and rate are the defaults (default: $POSTMAN_ENVIRONMENT, "
        "else from the key)",
    )
    api.add_argument(
        "--rate-limit",
        type=positive,
        default=None,
        help="calls/s (default: the environment's: 10, or 200 for loadtest)",
    )
    api.add_argument("--timeout", type=positive, default=30.0, help="seconds per HTTP call")
    api.add_argument("--max-retries", type=_count(0), default=5, help="HTTP retries per call")
    return common, api


def _demo(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--messages", type=_count(1), default=300, help="batch messages to send")
    demo.add_argument("--rate", type=positive, default=10.0, help="calls/s per campaign")
    demo.add_argument("--failure-rate", type=non_negative, default=0.1, help="0..1")
    demo.add_argument("--seed", type=int, default=1, help="the simulator's random seed")
    demo.add_argument(
        "--time-scale", type=positive, default=1.0, help="lifecycle speed-up (default 1: real time)"
    )


def _send(send: argparse.ArgumentParser) -> None:
    send.add_argument("recipient", help="a phone number with its country code (65...)")
    send.add_argument("--language", default="english", help="the template language")
    send.add_argument(
        "--value",
        action="append",
        default=[],
        metavar="NAME=TEXT",
        help="a template value (repeat for each name); --value body=Hello",
    )


def _list(listing: argparse.ArgumentParser) -> None:
    listing.add_argument("--batch", help="list this batch's messages")
    listing.add_argument("--search", help="recipient digits (+ and spaces are ignored)")
    listing.add_argument("--status", choices=STATUSES, help="only messages with this status")
    listing.add_argument(
        "--limit",
        type=_count(1),
        default=None,
        help="at most this many (default: 50 in a table; -q and --format json|tsv list all)",
    )
    listing.add_argument(
        "-q",
        "--ids-only",
        action="store_true",
        help="print only the IDs, one per line, of every page (for pipes)",
    )


def _retry(retry: argparse.ArgumentParser) -> None:
    retry.add_argument("message_ids", nargs="*", metavar="MESSAGE_ID")
    retry.add_argument("--ids-file", help="file of IDs, one per line ('-' for stdin)")
    retry.add_argument("--concurrency", type=_count(1), default=16, help="calls in flight")
    retry.add_argument("--report", type=_writable, help="write the report as JSON to this file")
    retry.add_argument(
        "--resume",
        type=_writable,
        metavar="FILE",
        help="on Ctrl-C or SIGTERM, write the IDs not yet done to FILE; if FILE exists, "
        "continue from it (no ID is POSTed twice)",
    )


def _retry_batch(batch: argparse.ArgumentParser) -> None:
    batch.add_argument("batch_id")
    batch.add_argument(
        "--wait-unresolved",
        type=non_negative,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for messages still 'created' (firing then would flip the batch)",
    )
    batch.add_argument(
        "--dry-run", action="store_true", help="say what it would retry; send nothing"
    )
    batch.add_argument(
        "--yes", action="store_true", help="do not ask before retrying errors not worth retrying"
    )
    batch.add_argument("--report", type=_writable, help="write the report as JSON to this file")


def _settle(settle: argparse.ArgumentParser) -> None:
    settle.add_argument("message_ids", nargs="*", metavar="MESSAGE_ID")
    settle.add_argument("--batch", action="append", default=[], help="a batch id (repeat)")
    settle.add_argument("--ids-file", help="file of IDs, one per line ('-' for stdin)")
    settle.add_argument(
        "--timeout-total", type=positive, default=3600.0, metavar="SECONDS", help="give up after"
    )
    settle.add_argument("--report", type=_writable, help="write the report as JSON to this file")


def _simulator(sim: argparse.ArgumentParser) -> None:
    from ._sim_args import add_simulator_arguments  # it uses this module's argument types

    add_simulator_arguments(sim)


#: (name, help, shared options: "api" / "output" / "none", example, its own arguments)
COMMANDS: list[tuple[str, str, str, str, Callable[[argparse.ArgumentParser], None]]] = [
    (
        "demo",
        "run the whole flow against the bundled simulator",
        "output",
        "postman-async demo --messages 50",
        _demo,
    ),
    ("send", "send one SMS", "api", "postman-async send 6591234567 --value body=Hello", _send),
    (
        "send-batch",
        "send a batch from a CSV file: required columns 'recipient' and 'language' "
        "(english, chinese, malay or tamil), then one column per template value",
        "api",
        "postman-async send-batch recipients.csv",
        _send_batch,
    ),
    (
        "status",
        "show messages and their attempts",
        "api",
        "postman-async status MESSAGE_ID MESSAGE_ID",
        _status,
    ),
    (
        "list",
        "list campaign or batch messages, newest first",
        "api",
        "postman-async list --status failure -q",
        _list,
    ),
    (
        "retry",
        "retry failed messages (one POST each, never twice)",
        "api",
        "postman-async retry --ids-file failed.txt --resume left.txt",
        _retry,
    ),
    (
        "retry-batch",
        "retry a batch's failed messages in one call",
        "api",
        "postman-async retry-batch BATCH_ID --dry-run",
        _retry_batch,
    ),
    (
        "settle",
        "retry until every message is delivered or failed for good",
        "api",
        "postman-async settle --batch BATCH_ID --report settle.json",
        _settle,
    ),
    (
        "simulator",
        "run the Postman v2 simulator standalone",
        "none",
        "postman-async simulator --port 8080 --failed-messages 100 --ids-out ids.txt",
        _simulator,
    ),
]
