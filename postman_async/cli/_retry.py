"""The retry commands: retry (interruptible and resumable), retry-batch, settle."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .._console import Output
from .._files import open_private
from ..errors import PostmanError, ValidationError
from ..models import MessageStatus
from ..orchestrator import RetryOrchestrator
from ..reports import Outcome, RetryReport, SettleProgress
from ..rules import NOT_WORTH_RETRYING
from ._common import LineReader, check_readable, client, counts_text, ids, write_lines
from ._exit import (
    EXIT_INTERRUPTED,
    EXIT_NOT_FIRED,
    EXIT_NOT_FOUND,
    EXIT_PARTIAL,
    CliError,
)


@contextlib.contextmanager
def interruptible(graceful: Callable[[], None]) -> Iterator[list[int]]:
    """The first Ctrl-C or SIGTERM calls ``graceful`` (finish what is in flight); a second
    one cancels the command. Yields the signals seen so far (``[count]``)."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    seen = [0]

    def on_signal() -> None:
        seen[0] += 1
        if seen[0] == 1:
            print("stopping: finishing the calls in flight (again to abort)", file=sys.stderr)
            graceful()
        elif task is not None:
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)
    try:
        yield seen
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def cmd_retry(args: argparse.Namespace, out: Output) -> int:
    resuming = bool(args.resume) and await asyncio.to_thread(os.path.exists, args.resume)
    if resuming:
        args.message_ids, args.ids_file = [], args.resume
    elif not args.message_ids and not args.ids_file:
        raise CliError("give message IDs or --ids-file FILE|-")
    total = await asyncio.to_thread(_count_input, args)  # a bad file stops here, before a call
    started = time.monotonic()
    bad_input: list[BaseException] = []
    async with client(args) as api:
        orchestrator = RetryOrchestrator(api, concurrency=args.concurrency)
        source = _until_bad_input(ids(args), orchestrator.stop, bad_input)
        with interruptible(orchestrator.stop) as signals:
            progress = lambda: _progress(orchestrator.report, started, total, args.rate_limit)  # noqa: E731
            with out.live(progress) as refresh:
                try:
                    report = await orchestrator.retry_messages(
                        source, on_progress=lambda _: refresh()
                    )
                except (asyncio.CancelledError, PostmanError) as exc:
                    report = orchestrator.report or RetryReport()
                    if not isinstance(exc, asyncio.CancelledError):
                        await _save(args, out, report, source, interrupted=False)
                        _summary(out, report, 0, None)
                        raise
            interrupted = signals[0] > 0
    left = await _save(args, out, report, source, interrupted=interrupted)
    _summary(out, report, left, args.resume if interrupted else None)
    if bad_input:  # the IDs before the bad line were done (and reported); the rest was not
        raise bad_input[0]
    if interrupted:
        return EXIT_INTERRUPTED
    if args.resume and resuming:
        os.remove(args.resume)  # nothing left to resume
    return _retry_exit(report)


async def _until_bad_input(
    source: AsyncIterator[str], stop: Callable[[], None], problems: list[BaseException]
) -> AsyncIterator[str]:
    """The IDs of ``source`` until one cannot be read (a line too long, not UTF-8): then the
    run stops taking IDs, the calls in flight finish, and the error is kept in ``problems``."""
    try:
        async for message_id in source:
            yield message_id
    except (ValidationError, CliError) as exc:
        problems.append(exc)
        stop()


def _never_tried(report: RetryReport) -> list[str]:
    """IDs cancelled before their POST was sent: safe to resume."""
    return [r.message_id for r in report if r.outcome == Outcome.CANCELLED and r.applied is False]


async def _save(
    args: argparse.Namespace,
    out: Output,
    report: RetryReport,
    source: AsyncIterator[str],
    *,
    interrupted: bool,
) -> int:
    """Write ``--report`` (partial or whole) and, when stopped early, the IDs never tried (the
    resume file): those not taken yet, and those cancelled before their POST was sent. IDs
    whose retry may have been applied are never among them (a cancelled POST in flight, an
    outcome unknown, an ID taken with no result): the summary lists them, to check first."""
    left = 0
    if interrupted:
        never_tried = _never_tried(report)
        rest = [i async for i in source]
        path = args.resume or f"retry-left-{time.strftime('%Y%m%d-%H%M%S')}.txt"
        await asyncio.to_thread(write_lines, path, [*never_tried, *rest])
        args.resume = path
        left = len(never_tried) + len(rest)
    if args.report:
        data = report.to_dict()
        data["summary"]["interrupted"] = interrupted
        await asyncio.to_thread(_write_json, args.report, data)
    return left


def _write_json(path: str, data: dict[str, Any]) -> None:
    """Write a report, private to its owner (mode 0600: it holds recipients and texts)."""
    import json

    with open_private(path) as handle:
        json.dump(data, handle, indent=1)


def _progress(report: RetryReport | None, started: float, total: int | None, budget: float) -> str:
    """Done of total, the rate, elapsed and the ETA at the campaign's budget."""
    if report is None:
        return "retrying: starting"
    elapsed = time.monotonic() - started
    done = len(report)
    rate = done / elapsed if elapsed > 0 else 0.0
    counts = counts_text({o.value: report.counts[o] for o in Outcome if report.counts[o]})
    of = f" of {total}" if total is not None else ""
    line = f"retrying: {done}{of} done ({counts}), {rate:.1f}/s, elapsed {elapsed:.0f}s"
    if total is not None:
        per_id = report.calls / done if done and report.calls else 1.0
        line += f", ETA {max(0, total - done - report.duplicates) * per_id / budget:.0f}s"
    return line


def _count_input(args: argparse.Namespace) -> int | None:
    """How many IDs the input holds (None for stdin or a pipe: it can be read once only).
    Reading a regular file through checks it too: a file that cannot be read, a line too
    long or not UTF-8 stops the command here, before any call."""
    if args.ids_file == "-":
        return None
    count = len(args.message_ids)
    if args.ids_file:
        if not check_readable(args.ids_file, "the IDs file"):
            return None  # a pipe
        reader = LineReader.open(args.ids_file)
        try:
            while batch := reader.next_batch():
                count += len(batch)
        finally:
            reader.close()
    return count


#: Rows shown per table of IDs (the report has them all).
SHOWN = 50


def _summary(out: Output, report: RetryReport, left: int, resume: str | None) -> None:
    if out.as_json:
        data = report.to_dict()
        data["summary"].update({"interrupted": resume is not None, "left": left})
        if resume:
            data["summary"]["resumeFile"] = resume
        out.json(data)
    else:
        rows = [[o.value, report.counts[o]] for o in Outcome if report.counts[o]]
        rows += [["duplicates", report.duplicates], ["calls", report.calls]]
        rows += [["elapsed", f"{report.elapsed:.1f}s"]]
        out.table("retry run", ["outcome", "messages"], rows)
        # Safe to send again, unless already saved to the resume file (never both).
        again = set(report.failures()) - (set(_never_tried(report)) if resume else set())
        _ids_table(
            out,
            "not retried (feed these back with --ids-file)",
            [
                [r.message_id, r.outcome.value, r.detail or ""]
                for r in report
                if r.message_id in again
            ],
        )
        unsure = set(report.uncertain())  # never "feed these back": check them first
        _ids_table(
            out,
            "outcome unknown: the retry may have been applied (do NOT feed these back to "
            "retry; check them with `postman-async settle ID...`, which reads before it "
            "retries)",
            [
                [r.message_id, r.outcome.value, r.detail or ""]
                for r in report
                if r.message_id in unsure
            ]
            + [[i, "pending", "taken, no result recorded"] for i in report.pending],
        )
        _ids_table(
            out,
            "not retried (errors another run will not fix)",
            [
                [r.message_id, r.outcome.value, r.detail or ""]
                for r in report
                if r.outcome == Outcome.ERROR and not r.worth_another_run
            ],
        )
    if resume:
        out.line(
            f"interrupted: {len(report)} done, {left} not started, saved to {resume}; "
            f"continue with: postman-async retry --resume {resume}"
        )


def _ids_table(out: Output, title: str, rows: list[list[Any]]) -> None:
    if not rows:
        return
    more = len(rows) - SHOWN
    out.table(title, ["id", "outcome", "why"], rows[:SHOWN])
    if more > 0:
        out.line(f"... and {more} more (--report has them all)")


def _retry_exit(report: RetryReport) -> int:
    total = len(report)
    if total and report.counts[Outcome.RETRIED] == total:
        return 0
    if total and report.counts[Outcome.NOT_FOUND] == total:
        return EXIT_NOT_FOUND
    return EXIT_PARTIAL if total else EXIT_NOT_FOUND


async def cmd_retry_batch(args: argparse.Namespace, out: Output) -> int:
    async with client(args) as api:
        plan = await _batch_plan(api, args.batch_id)
        out.line(_describe_plan(args.batch_id, plan))
        if args.dry_run:
            return 0
        if plan["notWorth"] and not args.yes and not _confirm(plan["notWorth"]):
            out.line("not fired: declined")
            return EXIT_NOT_FIRED
        report = await RetryOrchestrator(api).retry_batch(
            args.batch_id, wait_unresolved=args.wait_unresolved
        )
    if args.report:
        await asyncio.to_thread(_write_json, args.report, report.to_dict())
    if out.as_json:
        out.json(report.to_dict())
    else:
        out.table(
            f"batch {args.batch_id}",
            ["", "value"],
            [
                ["fired", "yes" if report.fired else "no"],
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


async def _batch_plan(api: Any, batch_id: str) -> dict[str, Any]:
    """What a batch retry would touch: read the batch (1 call per 1,000 messages)."""
    failed, created = 0, 0
    not_worth: dict[str, int] = {}
    async for message in api.list_batch_messages(batch_id, page_size=1000):
        if message.latest_status == MessageStatus.CREATED:
            created += 1
        if message.latest_status == MessageStatus.FAILURE:
            failed += 1
            code = message.latest_error_code
            if code in NOT_WORTH_RETRYING:
                not_worth[code] = not_worth.get(code, 0) + 1
    return {"failed": failed, "created": created, "notWorth": not_worth}


def _describe_plan(batch_id: str, plan: dict[str, Any]) -> str:
    text = f"batch {batch_id}: {plan['failed']} failed messages would be retried"
    if plan["notWorth"]:
        text += (
            f", {sum(plan['notWorth'].values())} of them with errors a retry will not fix "
            f"({counts_text(plan['notWorth'])}): each spends one of its attempts"
        )
    if plan["created"]:
        text += f"; {plan['created']} still 'created' (it will not fire while they are)"
    return text


def _confirm(not_worth: dict[str, int]) -> bool:
    """Ask on a terminal; off a terminal, a script must say ``--yes``."""
    if not sys.stdin.isatty():
        raise CliError(
            f"{sum(not_worth.values())} of the failed messages have errors a retry will not "
            "fix; pass --yes to retry them anyway (or --dry-run to look)"
        )
    answer = input("Retry them anyway? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


async def cmd_settle(args: argparse.Namespace, out: Output) -> int:
    message_ids = [i async for i in ids(args)]
    if not message_ids and not args.batch:
        raise CliError("give message IDs, --ids-file or --batch")
    async with client(args) as api:
        status = ["settling: reading state"]
        run = asyncio.ensure_future(_settle(api, args, message_ids, status, out))

        def stop() -> None:
            run.cancel()

        with interruptible(stop):
            try:
                settle = await run
            except asyncio.CancelledError:
                out.line(
                    "interrupted. Run the same settle again to continue: it reads every "
                    "message before it retries, so nothing is retried twice."
                )
                return EXIT_INTERRUPTED
    data = _settle_dict(settle)
    if args.report:
        await asyncio.to_thread(_write_json, args.report, data)
    if out.as_json:
        out.json(data)
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
    if not settle.states:
        return EXIT_NOT_FOUND if settle.not_found or message_ids or args.batch else 0
    return EXIT_PARTIAL if settle.unsettled or settle.not_found else 0


async def _settle(
    api: Any, args: argparse.Namespace, message_ids: list[str], status: list[str], out: Output
) -> Any:
    with out.live(lambda: status[0]) as refresh:

        def show(progress: SettleProgress) -> None:
            left = progress.messages - progress.settled
            status[0] = (
                f"{progress.describe()}; elapsed {progress.elapsed:.0f}s; ETA <= "
                f"{left / args.rate_limit:.0f}s of calls at {args.rate_limit:g}/s"
            )
            refresh()

        return await RetryOrchestrator(api).retry_until_settled(
            message_ids, batch_ids=args.batch, timeout=args.timeout_total, on_progress=show
        )


def _settle_dict(settle: Any) -> dict[str, Any]:
    return {
        "summary": settle.summary(),
        "rounds": len(settle.rounds),
        "delivered": settle.delivered,
        "failedForGood": dict(settle.failed_for_good),
        "unsettled": settle.unsettled,
        "notFound": settle.not_found,
        "exhausted": settle.exhausted,
        "attemptCap": settle.attempt_cap,
        "calls": settle.calls,
        "callsByPurpose": settle.calls_by_purpose(),
        "states": {i: s.status for i, s in settle.states.items()},
    }
