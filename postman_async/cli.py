"""The ``postman-async`` command line.

``demo`` and ``simulator`` need no API key. The operational commands read the key from
``POSTMAN_API_KEY``, the campaign from ``POSTMAN_CAMPAIGN_ID`` (or ``--campaign``) and take
``--base-url`` for the test environment. Every command prints a table, or JSON with
``--json``, and exits non-zero with a one-line message on bad input, auth errors and exhausted
budgets (2: bad input, 3: auth, 4: rate limit/retry budget, 1: other API or network error,
5: ``retry-batch`` did not fire, 130: interrupted).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

from . import errors
from ._console import Output
from .cli_jobs import JobCliError, add_job_parser, cmd_job, run_worker
from .client import PostmanClient
from .converter import encode
from .demo import DemoOptions, progress_line, run_demo
from .models import Message, MessageStatus
from .orchestrator import RetryOrchestrator
from .reports import Outcome, RetryReport, SettleProgress
from .testing.gateway import Faults
from .testing.network import Network
from .testing.simulator import PostmanSimulator, campaign_summary

EXIT_INPUT, EXIT_AUTH, EXIT_BUDGET, EXIT_OTHER, EXIT_NOT_FIRED = 2, 3, 4, 1, 5
EXIT_INTERRUPTED = 130


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_INPUT) -> None:
        super().__init__(message)
        self.code = code


# -- argument parsing ----------------------------------------------------------------------


def _non_negative(text: str) -> float:
    """A finite number >= 0 (argparse type)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="postman-async", description="Postman v2 SMS API: send, inspect and retry."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print JSON for scripts")

    api = argparse.ArgumentParser(add_help=False, parents=[common])
    api.add_argument(
        "--campaign",
        default=os.environ.get("POSTMAN_CAMPAIGN_ID"),
        help="campaign id (default: $POSTMAN_CAMPAIGN_ID)",
    )
    api.add_argument(
        "--base-url",
        default=os.environ.get("POSTMAN_BASE_URL"),
        help="API base URL (default: from the key prefix)",
    )
    api.add_argument("--rate-limit", type=float, default=10.0, help="calls/s (default 10)")
    api.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP call")
    api.add_argument("--max-retries", type=int, default=5, help="HTTP retries per call")

    demo = sub.add_parser(
        "demo", parents=[common], help="run the whole flow against the bundled simulator"
    )
    demo.add_argument("--messages", type=int, default=300)
    demo.add_argument("--rate", type=float, default=10.0, help="calls/s per campaign")
    demo.add_argument("--failure-rate", type=float, default=0.1)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument(
        "--time-scale", type=float, default=1.0, help="lifecycle speed-up (default 1: real time)"
    )

    send = sub.add_parser("send", parents=[api], help="send one SMS")
    send.add_argument("recipient")
    send.add_argument("--language", default="english")
    send.add_argument(
        "--value",
        action="append",
        default=[],
        metavar="NAME=TEXT",
        help="a template value (repeat); --value body=Hello",
    )

    status = sub.add_parser("status", parents=[api], help="show one message")
    status.add_argument("message_id")

    listing = sub.add_parser("list", parents=[api], help="list campaign or batch messages")
    listing.add_argument("--batch", help="list this batch's messages")
    listing.add_argument("--search", help="recipient substring")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")

    retry = sub.add_parser("retry", parents=[api], help="retry failed messages")
    retry.add_argument("message_ids", nargs="*")
    retry.add_argument("--ids-file", help="file of IDs, one per line ('-' for stdin)")
    retry.add_argument("--concurrency", type=int, default=16)
    retry.add_argument("--report", help="write the full report as JSON to this file")

    retry_batch = sub.add_parser("retry-batch", parents=[api], help="retry a batch")
    retry_batch.add_argument("batch_id")
    retry_batch.add_argument("--wait-unresolved", type=float, default=0.0, metavar="SECONDS")

    settle = sub.add_parser("settle", parents=[api], help="retry until settled")
    settle.add_argument("message_ids", nargs="*")
    settle.add_argument("--batch", action="append", default=[], help="a batch id (repeat)")
    settle.add_argument("--ids-file", help="file of IDs, one per line ('-' for stdin)")
    settle.add_argument("--timeout-total", type=float, default=3600.0, metavar="SECONDS")

    add_job_parser(sub, api, common)

    sim = sub.add_parser("simulator", help="run the Postman v2 simulator standalone")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8080)
    sim.add_argument("--rate-limit", type=float, default=10.0, help="calls/s per campaign")
    sim.add_argument(
        "--rate-limit-mode", choices=("sliding", "fixed", "token_bucket"), default="sliding"
    )
    sim.add_argument("--no-retry-after", action="store_true", help="omit Retry-After on 429")
    sim.add_argument("--time-scale", type=float, default=1.0, help="lifecycle speed-up")
    sim.add_argument("--failure-rate", type=float, default=0.0)
    sim.add_argument(
        "--max-attempts",
        type=int,
        default=3,
        help="the server's attempt cap, original send included (the docs allow 3 or 4)",
    )
    sim.add_argument(
        "--retry-failure-rate",
        type=float,
        default=None,
        help="share of retried failures that fail again (default: as --failure-rate)",
    )
    sim.add_argument("--max-batch-rows", type=int, default=None)
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--server-error-rate", type=float, default=0.0)
    sim.add_argument(
        "--competing-share",
        type=float,
        default=0.0,
        help="share of each campaign's rate taken by a simulated competing client (0..1)",
    )
    sim.add_argument(
        "--latency-ms",
        type=_non_negative,
        default=0.0,
        help="one-way network delay added to each request, in and out (ms)",
    )
    sim.add_argument(
        "--jitter-ms",
        type=_non_negative,
        default=0.0,
        help="spread of that delay on top of --latency-ms (ms)",
    )
    sim.add_argument(
        "--jitter-dist",
        choices=("uniform", "lognormal"),
        default="uniform",
        help="uniform in [0, jitter], or lognormal (median jitter/2, heavy tail)",
    )
    sim.add_argument("--latency", type=float, default=0.0)
    sim.add_argument(
        "--failed-messages",
        type=int,
        default=0,
        help="pre-create this many failed messages (to try retries on)",
    )
    sim.add_argument("--ids-out", default=None, help="write the pre-created IDs to this file")
    return parser


# -- helpers -------------------------------------------------------------------------------


def _client(args: argparse.Namespace) -> PostmanClient:
    key = os.environ.get("POSTMAN_API_KEY")
    if not key:
        raise CliError("set POSTMAN_API_KEY to the campaign's API key")
    if not args.campaign:
        raise CliError("give --campaign or set POSTMAN_CAMPAIGN_ID")
    return PostmanClient(
        api_key=key,
        campaign_id=args.campaign,
        base_url=args.base_url,
        rate_limit=args.rate_limit,
        timeout=args.timeout,
        max_retries=args.max_retries,
    )


def _message_row(m: Message) -> list[Any]:
    return [
        m.id,
        m.recipient or "",
        m.latest_status or "",
        m.attempt_count or "",
        m.latest_error_code or "",
        m.created_at.isoformat() if m.created_at else "",
    ]


MESSAGE_COLUMNS = ["id", "recipient", "status", "attempts", "last error", "created"]


async def _ids(args: argparse.Namespace) -> AsyncIterator[str]:
    for message_id in args.message_ids:
        yield message_id
    if args.ids_file:
        if args.ids_file == "-":
            lines = await asyncio.to_thread(sys.stdin.readlines)
        else:
            try:
                lines = await asyncio.to_thread(_read_lines, args.ids_file)
            except OSError as exc:
                raise CliError(f"cannot read {args.ids_file}: {exc.strerror}") from exc
        for line in lines:
            if line.strip() and not line.lstrip().startswith("#"):
                yield line.strip()


def _read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return handle.readlines()


def _write_lines(path: str, lines: Sequence[str]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{line}\n" for line in lines)


def _retry_summary(out: Output, report: RetryReport) -> None:
    rows = [[o.value, report.counts[o]] for o in Outcome if report.counts[o]]
    rows += [
        ["duplicates", report.duplicates],
        ["calls", report.calls],
        ["elapsed", f"{report.elapsed:.1f}s"],
    ]
    out.table("retry run", ["outcome", "messages"], rows)
    errors_ = [r for r in report if r.outcome in (Outcome.ERROR, Outcome.CANCELLED)]
    if errors_:
        out.table(
            "not retried (feed these back with --ids-file)",
            ["id", "outcome", "why"],
            [[r.message_id, r.outcome.value, r.detail or ""] for r in errors_[:50]],
        )


# -- commands ------------------------------------------------------------------------------


async def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    options = DemoOptions(
        messages=args.messages,
        rate=args.rate,
        failure_rate=args.failure_rate,
        seed=args.seed,
        time_scale=args.time_scale,
    )
    if options.messages < 1 or options.rate <= 0 or not 0 <= options.failure_rate <= 1:
        raise CliError("--messages must be >= 1, --rate > 0, --failure-rate within 0..1")
    out.line(
        f"demo: {options.messages} batch messages + {options.singles} single sends, "
        f"{options.rate:g} calls/s, random failure rate {options.failure_rate:.0%}, "
        f"seed {options.seed}, against the bundled simulator"
    )
    text = ["starting"]
    with out.live(lambda: text[0]) as refresh:

        def tick(sim: PostmanSimulator, phase: str) -> None:
            text[0] = progress_line(sim, phase)
            refresh()

        result = await run_demo(options, tick)
    summary = result.summary()
    if out.as_json:
        out.json(summary)
        return 0
    failed = summary["failed_for_good"]
    rows: list[list[Any]] = [
        ["messages", summary["messages"]],
        ["delivered", summary["delivered"]],
        ["failed for good", sum(failed.values())],
        *[[f"  {code}", count] for code, count in sorted(failed.items())],
        ["unsettled", summary["unsettled"]],
        ["settle rounds", summary["rounds"]],
        ["calls spent", summary["calls_spent"]],
        *[[f"  {k}", v] for k, v in summary["calls_by_purpose"].items()],
        ["calls per delivered message", summary["calls_per_delivered_message"]],
        ["max calls the server saw in any second", summary["max_calls_in_any_second"]],
        ["429 responses", summary["throttled_429"]],
        ["elapsed", f"{summary['elapsed_seconds']}s"],
    ]
    out.table(
        "demo summary (server-side figures from the simulator's ground truth)", ["", "value"], rows
    )
    return 0


async def cmd_send(args: argparse.Namespace, out: Output) -> int:
    values = {}
    for item in args.value:
        name, sep, text = item.partition("=")
        if not sep:
            raise CliError(f"--value {item!r}: use NAME=TEXT")
        values[name] = text.replace("\\n", "\n")
    async with _client(args) as client:
        message = await client.send_message(args.recipient, args.language, values)
    if out.as_json:
        out.json(encode(message))
    else:
        out.table("sent", MESSAGE_COLUMNS, [_message_row(message)])
    return 0


async def cmd_status(args: argparse.Namespace, out: Output) -> int:
    async with _client(args) as client:
        message = await client.get_message(args.message_id)
    if out.as_json:
        out.json(encode(message))
        return 0
    out.table("message", MESSAGE_COLUMNS, [_message_row(message)])
    attempts = message.attempts or message.message_attempts or ()
    if attempts:
        out.table(
            "attempts (newest first)",
            ["status", "created", "error"],
            [
                [
                    a.status or "",
                    a.created_at.isoformat() if a.created_at else "",
                    f"{a.error_type}/{a.error_code}" if a.error_code else "",
                ]
                for a in attempts
            ],
        )
    if message.batch is not None:
        out.line(f"batch {message.batch.id}: {message.batch.status}")
    return 0


async def cmd_list(args: argparse.Namespace, out: Output) -> int:
    if args.limit < 1:
        raise CliError("--limit must be >= 1")
    async with _client(args) as client:
        page_size = min(args.limit, 1000)
        source = (
            client.list_batch_messages(args.batch, page_size=page_size, search=args.search)
            if args.batch
            else client.list_messages(page_size=page_size, search=args.search)
        )
        messages: list[Message] = []
        async for message in source:
            messages.append(message)
            if len(messages) >= args.limit:
                break
    if out.as_json:
        out.json([encode(m) for m in messages])
    else:
        title = f"batch {args.batch}" if args.batch else "campaign messages"
        out.table(
            f"{title} (newest first, {len(messages)} shown)",
            MESSAGE_COLUMNS,
            [_message_row(m) for m in messages],
        )
    return 0


async def cmd_retry(args: argparse.Namespace, out: Output) -> int:
    if not args.message_ids and not args.ids_file:
        raise CliError("give message IDs or --ids-file FILE|-")
    async with _client(args) as client:
        orchestrator = RetryOrchestrator(client, concurrency=args.concurrency)
        args.orchestrator = orchestrator  # so Ctrl-C can print what was done
        with out.live(lambda: _progress(orchestrator.report)) as refresh:
            try:
                report = await orchestrator.retry_messages(
                    _ids(args), on_progress=lambda _: refresh()
                )
            finally:
                if args.report and orchestrator.report is not None:
                    orchestrator.report.write_json(args.report)
    if out.as_json:
        out.json(report.to_dict())
    else:
        _retry_summary(out, report)
    return 0


def _progress(report: RetryReport | None) -> str:
    return f"retrying: {report.summary()}" if report is not None else "retrying: starting"


async def cmd_retry_batch(args: argparse.Namespace, out: Output) -> int:
    async with _client(args) as client:
        report = await RetryOrchestrator(client).retry_batch(
            args.batch_id, wait_unresolved=args.wait_unresolved
        )
    if out.as_json:
        out.json(report.to_dict())
    else:
        out.table(
            f"batch {args.batch_id}",
            ["", "value"],
            [
                ["fired", report.fired],
                ["reason", report.reason.value],
                ["batch status", report.batch_status or "?"],
                ["messages", report.messages],
                ["retried", len(report.retried_ids)],
                ["exhausted", len(report.exhausted_ids)],
                ["unresolved", len(report.unresolved_ids)],
                ["calls", report.calls],
            ],
        )
        if report.error is not None:
            out.line(f"server said: {report.error}")
    return 0 if report.fired else EXIT_NOT_FIRED


async def cmd_settle(args: argparse.Namespace, out: Output) -> int:
    ids = [i async for i in _ids(args)]
    if not ids and not args.batch:
        raise CliError("give message IDs, --ids-file or --batch")
    async with _client(args) as client:
        status = ["settling: reading state"]
        with out.live(lambda: status[0]) as refresh:

            def show(progress: SettleProgress) -> None:
                status[0] = progress.describe()
                refresh()

            settle = await RetryOrchestrator(client).retry_until_settled(
                ids, batch_ids=args.batch, timeout=args.timeout_total, on_progress=show
            )
    if out.as_json:
        out.json(
            {
                "summary": settle.summary(),
                "rounds": len(settle.rounds),
                "delivered": settle.delivered,
                "failedForGood": settle.failed_for_good,
                "unsettled": settle.unsettled,
                "exhausted": settle.exhausted,
                "attemptCap": settle.attempt_cap,
                "calls": settle.calls,
                "callsByPurpose": settle.calls_by_purpose(),
                "states": {i: s.status for i, s in settle.states.items()},
            }
        )
    else:
        out.table(
            "settle rounds",
            ["round", "failed", "batch retries", "single retries", "calls"],
            [
                [r.number, r.failed, len(r.batch_retries), r.single_retries, r.calls]
                for r in settle.rounds
            ],
        )
        out.line(settle.summary())
    return 0


async def cmd_simulator(args: argparse.Namespace, out: Output) -> int:
    sim = PostmanSimulator(
        host=args.host,
        port=args.port,
        rate_limit=args.rate_limit,
        rate_limit_mode=args.rate_limit_mode,
        retry_after_header=not args.no_retry_after,
        time_scale=args.time_scale,
        failure_rate=args.failure_rate,
        max_attempts=args.max_attempts,
        retry_failure_rate=args.retry_failure_rate,
        max_batch_rows=args.max_batch_rows,
        seed=args.seed,
        faults=Faults(
            server_error_rate=args.server_error_rate,
            latency=args.latency,
            competing_share=args.competing_share,
        ),
        network=Network(args.latency_ms / 1000, args.jitter_ms / 1000, args.jitter_dist),
    )
    failed = (MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")
    ids = [sim.create_message(outcome=failed).id for _ in range(args.failed_messages)]
    if args.ids_out:
        await asyncio.to_thread(_write_lines, args.ids_out, ids)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with sim:
        print(campaign_summary(sim), flush=True)
        await stop.wait()
    print("simulator stopped", file=sys.stderr)
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Output], Coroutine[Any, Any, int]]] = {
    "demo": cmd_demo,
    "send": cmd_send,
    "status": cmd_status,
    "list": cmd_list,
    "retry": cmd_retry,
    "retry-batch": cmd_retry_batch,
    "settle": cmd_settle,
    "simulator": cmd_simulator,
    "job": cmd_job,
}


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, (errors.ValidationError, CliError, JobCliError)):
        return getattr(exc, "code", EXIT_INPUT)
    if isinstance(
        exc, (errors.AuthenticationError, errors.IpNotAllowedError, errors.PermissionDeniedError)
    ):
        return EXIT_AUTH
    if isinstance(exc, (errors.TooManyRequestsError, errors.RetryBudgetExhaustedError)):
        return EXIT_BUDGET
    return EXIT_OTHER


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Output(as_json=getattr(args, "json", False))
    command = COMMANDS[args.command]
    try:
        if args.command == "job" and args.job_command == "worker":
            return run_worker(args)
        return asyncio.run(command(args, out))
    except KeyboardInterrupt:
        orchestrator = getattr(args, "orchestrator", None)
        report = orchestrator.report if orchestrator is not None else None
        out.line("interrupted" + (f"; done so far: {report.summary()}" if report else ""))
        return EXIT_INTERRUPTED
    except (errors.PostmanError, CliError, JobCliError) as exc:
        print(f"postman-async: {exc}", file=sys.stderr)
        partial = getattr(exc, "report", None)
        if isinstance(partial, RetryReport) and len(partial):
            print(f"postman-async: done before stopping: {partial.summary()}", file=sys.stderr)
        return _exit_code(exc)
    except OSError as exc:
        print(f"postman-async: {exc}", file=sys.stderr)
        return EXIT_OTHER
