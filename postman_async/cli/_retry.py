"""The retry command: interruptible and resumable, one POST per ID, never twice."""

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

from .._console import Output, RecentRate
from .._files import open_private
from ..client import PostmanClient
from ..errors import PostmanError, ValidationError
from ..orchestrator import RetryOrchestrator
from ..reports import Outcome, RetryReport
from ._common import (
    LineReader,
    check_readable,
    client,
    counts_text,
    ids,
    spool_if_piped,
    write_lines,
)
from ._exit import (
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_NOT_FOUND,
    EXIT_OTHER,
    EXIT_PARTIAL,
    CliError,
    exit_code,
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
    spooled = await asyncio.to_thread(spool_if_piped, args.ids_file) if args.ids_file else None
    try:
        if spooled is not None:
            args.ids_file = spooled
        return await _retry(args, out, resuming, after_a_writer=spooled is not None)
    finally:
        if spooled is not None:
            os.remove(spooled)


async def _retry(
    args: argparse.Namespace, out: Output, resuming: bool, *, after_a_writer: bool
) -> int:
    total = await asyncio.to_thread(_count_input, args)  # a bad file stops here, before a call
    bad_input: list[BaseException] = []
    async with client(args) as api:
        pause = getattr(api.limiter, "pause", None)
        if after_a_writer and pause is not None:
            # The command that piped the IDs in may have spent this second's budget.
            pause(1.0)
        orchestrator = RetryOrchestrator(api, concurrency=args.concurrency)
        source = _until_bad_input(ids(args), orchestrator.stop, bad_input)
        with interruptible(orchestrator.stop) as signals:
            progress = RetryProgress(api, total)
            with out.live(lambda: progress.line(orchestrator.report)) as refresh:
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
        await asyncio.to_thread(write_json, args.report, data)
    return left


def write_json(path: str, data: dict[str, Any]) -> None:
    """Write a report, private to its owner (mode 0600: it holds recipients and texts)."""
    import json

    with open_private(path) as handle:
        json.dump(data, handle, indent=1)


class RetryProgress:
    """The live line: done of total, the calls per second over the last seconds (never above
    the budget), elapsed, and an ETA from the IDs done per second lately (none before any)."""

    def __init__(
        self, api: PostmanClient, total: int | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.api = api
        self.total = total
        self.clock = clock
        self.started = clock()
        self.calls = RecentRate(api.calls, clock=clock)
        self.done = RecentRate(0, clock=clock)

    def line(self, report: RetryReport | None) -> str:
        if report is None:
            return "retrying: starting"
        elapsed = self.clock() - self.started
        done = len(report)
        per_second = self.calls.update(self.api.calls)
        ids_per_second = self.done.update(done)
        counts = counts_text({o.value: report.counts[o] for o in Outcome if report.counts[o]})
        of = f" of {self.total}" if self.total is not None else ""
        line = (
            f"retrying: {done}{of} done ({counts}), {per_second:.1f} calls/s "
            f"(last {self.calls.seconds}s), elapsed {elapsed:.0f}s"
        )
        left = max(0, self.total - done - report.duplicates) if self.total is not None else 0
        if left and ids_per_second > 0:
            line += f", ETA {left / ids_per_second:.0f}s"
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
    """0: every ID retried; 7: some retried (or may have been: an outcome unknown) and some
    not. Nothing retried: 6 when no ID exists; else the errors' own code when they agree (2
    for an invalid ID, 8 for the network...); else 2, the server having refused each retry
    with a 400 (not in failure, out of attempts, held by its batch's status)."""
    total = len(report)
    retried = report.counts[Outcome.RETRIED]
    if total and retried == total:
        return 0
    if retried or report.uncertain_count:
        return EXIT_PARTIAL
    if report.counts[Outcome.NOT_FOUND] == total:
        return EXIT_NOT_FOUND
    codes = {exit_code(r.error) for r in report if r.outcome == Outcome.ERROR and r.error}
    if len(codes) > 1:
        return EXIT_OTHER
    return codes.pop() if codes else EXIT_INPUT
