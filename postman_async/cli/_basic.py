"""The everyday commands: demo, send, send-batch, status, list, simulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import textwrap
from typing import Any

from .._console import Output
from ..converter import encode
from ..errors import NotFoundError, PostmanError
from ..models import Message, MessageStatus
from ..validation import normalize_recipient
from . import _send
from ._common import MESSAGE_COLUMNS, client, message_row, when, write_lines
from ._exit import EXIT_NOT_FOUND, EXIT_PARTIAL, CliError


async def cmd_demo(args: argparse.Namespace, out: Output) -> int:
    # The demo and the simulator (aiohttp's server) are imported by their commands only:
    # every other command starts faster.
    from ..demo import DemoOptions, progress_line, run_demo
    from ..testing.simulator import PostmanSimulator

    options = DemoOptions(
        messages=args.messages,
        rate=args.rate,
        failure_rate=args.failure_rate,
        seed=args.seed,
        time_scale=args.time_scale,
    )
    if not 0 <= options.failure_rate <= 1:
        raise CliError("--failure-rate must be within 0..1")
    out.line(
        f"demo: {options.messages} batch messages + {options.singles} single sends, "
        f"{options.rate:g} calls/s, random failure rate {options.failure_rate:.0%}, "
        f"seed {options.seed}, against the bundled simulator"
    )
    text = ["starting"]
    with out.live(lambda: text[0]) as refresh:

        def tick(sim: PostmanSimulator, phase: str) -> None:
            text[0] = progress_line(sim, phase, options.messages + options.singles, options.rate)
            refresh()

        result = await run_demo(options, tick)
    s = result.summary()
    if out.for_scripts:
        out.json(
            {
                "messages": s["messages"],
                "delivered": s["delivered"],
                "failedForGood": s["failed_for_good"],
                "unsettled": s["unsettled"],
                "rounds": s["rounds"],
                "callsSpent": s["calls_spent"],
                "callsByPurpose": s["calls_by_purpose"],
                "callsPerDeliveredMessage": s["calls_per_delivered_message"],
                "serverRequests": s["server_requests"],
                "maxCallsInAnySecond": s["max_calls_in_any_second"],
                "throttled429": s["throttled_429"],
                "elapsedSeconds": s["elapsed_seconds"],
            }
        )
        return 0
    failed = s["failed_for_good"]
    rows: list[list[Any]] = [
        ["messages", s["messages"]],
        ["delivered", s["delivered"]],
        ["failed for good", sum(failed.values())],
        *[[f"  {code}", count] for code, count in sorted(failed.items())],
        ["unsettled", s["unsettled"]],
        ["settle rounds", s["rounds"]],
        ["calls spent", s["calls_spent"]],
        *[[f"  {k}", v] for k, v in s["calls_by_purpose"].items()],
        ["calls per delivered message", s["calls_per_delivered_message"]],
        ["max calls the server saw in any second", s["max_calls_in_any_second"]],
        ["429 responses", s["throttled_429"]],
        ["elapsed", f"{s['elapsed_seconds']}s"],
    ]
    out.table("demo summary (server-side figures from the simulator)", ["", "value"], rows)
    return 0


def _values(items: list[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise CliError(f"--value {item!r}: use NAME=TEXT")
        if name in values:
            raise CliError(f"--value {name}= is given twice")
        values[name] = text.replace("\\n", "\n")
    return values


async def cmd_send(args: argparse.Namespace, out: Output) -> int:
    return await _send.send(args, out, _values(args.value))


async def cmd_send_batch(args: argparse.Namespace, out: Output) -> int:
    return await _send.send_batch(args, out)


async def cmd_status(args: argparse.Namespace, out: Output) -> int:
    found: list[Message] = []
    missing: list[str] = []
    async with client(args) as api:
        for message_id in dict.fromkeys(args.message_ids):
            try:
                found.append(await api.get_message(message_id))
            except NotFoundError as exc:
                if exc.code == "invalid_path":  # no such route: the base URL is wrong
                    raise
                missing.append(message_id)
    if out.as_json:
        out.json({"messages": [encode(m) for m in found], "notFound": missing})
    else:
        _show_messages(out, "messages", found)
        if len(found) == 1 and not out.for_scripts:
            _show_attempts(out, found[0])
    for message_id in missing:
        print(f"postman-async: {message_id}: not found", file=sys.stderr)
    if not found:
        return EXIT_NOT_FOUND
    return EXIT_PARTIAL if missing else 0


def _show_messages(out: Output, title: str, messages: list[Message]) -> None:
    if out.as_json:
        out.json([encode(m) for m in messages] if len(messages) != 1 else encode(messages[0]))
        return
    if messages:
        out.table(title, MESSAGE_COLUMNS, [message_row(m) for m in messages])


def _show_attempts(out: Output, message: Message) -> None:
    attempts = message.attempts or message.message_attempts or ()
    if attempts:
        out.table(
            "attempts (newest first)",
            ["status", "created", "error"],
            [
                [
                    a.status or "",
                    when(a.created_at),
                    f"{a.error_type}/{a.error_code}" if a.error_code else "",
                ]
                for a in attempts
            ],
        )
    if message.batch is not None:
        out.line(f"batch {message.batch.id}: {message.batch.status}")


#: The table view of ``list`` shows this many unless ``--limit`` says otherwise; ``-q`` and
#: ``--format json|tsv`` stream every page.
TABLE_LIMIT = 50
#: After a table is cut at its limit, at most this many more listing calls count the rest.
COUNT_MORE_PAGES = 5


async def cmd_list(args: argparse.Namespace, out: Output) -> int:
    search = _digits(args.search) if args.search else None
    wanted = MessageStatus(args.status) if args.status else None
    for_people = not (out.for_scripts or args.ids_only)
    limit = args.limit if args.limit is not None else (TABLE_LIMIT if for_people else None)
    stream = _Stream(out, ids_only=args.ids_only)
    more, extra_pages, complete = 0, 0, True
    async with client(args) as api:
        source = (
            api.list_batch_messages(args.batch, page_size=1000, search=search)
            if args.batch
            else api.list_messages(page_size=1000, search=search)
        )
        async with contextlib.aclosing(source.pages()) as pages:
            async for page in pages:
                for message in page.data:
                    if wanted is not None and message.latest_status != wanted:
                        continue
                    if limit is None or stream.count < limit:
                        stream.add(message)
                    else:
                        more += 1
                if limit is not None and stream.count >= limit and page.next_cursor:
                    if not for_people or extra_pages >= COUNT_MORE_PAGES:
                        complete = False
                        break
                    extra_pages += 1
    stream.close()
    if args.ids_only:
        return 0 if stream.count else EXIT_NOT_FOUND
    if for_people:
        title = f"batch {args.batch}" if args.batch else "campaign messages"
        shown = f"{stream.count} shown" + (f", status {wanted}" if wanted else "")
        out.table(
            f"{title} (newest first, {shown})",
            MESSAGE_COLUMNS,
            [message_row(m) for m in stream.kept],
        )
    if for_people and (more or not complete):
        count = f"{more} more" if complete else f"at least {more} more"
        print(
            f"postman-async: {count} not shown (the table stops at {limit}); "
            f"--limit {stream.count + more if complete else 'N'} shows them, and -q or "
            "--format json|tsv lists every one",
            file=sys.stderr,
        )
    return 0


class _Stream:
    """``list``'s output as it is read: IDs (``-q``), a JSON array or TSV rows, printed page
    by page; for a table, the messages kept to show at the end."""

    def __init__(self, out: Output, *, ids_only: bool) -> None:
        self.out = out
        self.ids_only = ids_only
        self.count = 0
        self.kept: list[Message] = []

    def add(self, message: Message) -> None:
        first = self.count == 0
        self.count += 1
        if self.ids_only:
            print(message.id, flush=True)  # a pipe starts working at once
        elif self.out.as_json:
            text = json.dumps(encode(message), indent=2, default=str)
            print("[" if first else ",", textwrap.indent(text, "  "), sep="\n", end="")
        elif self.out.fmt == "tsv":
            if first:
                print("\t".join(MESSAGE_COLUMNS))
            print("\t".join(str(cell).replace("\t", " ") for cell in message_row(message)))
        else:
            self.kept.append(message)

    def close(self) -> None:
        if self.ids_only:
            return
        if self.out.as_json:
            print("\n]" if self.count else "[]")
        elif self.out.fmt == "tsv" and not self.count:
            print("\t".join(MESSAGE_COLUMNS))


def _digits(search: str) -> str:
    """``+65 9123`` as the API stores it: ``659123``."""
    text = search.replace(" ", "").replace("-", "")
    try:
        return normalize_recipient(text) if text.startswith("+") else text
    except PostmanError:
        return text.lstrip("+")


async def cmd_simulator(args: argparse.Namespace, out: Output) -> int:
    from ..testing.gateway import Faults
    from ..testing.network import Network
    from ..testing.simulator import PostmanSimulator, campaign_summary

    sim = PostmanSimulator(
        host=args.host,
        port=args.port,
        rate_limit=args.rate_limit,
        load_test=args.load_test,
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
        network=Network(
            args.latency_ms / 1000,
            args.jitter_ms / 1000,
            args.jitter_dist,
            retransmit_share=args.retransmit_share,
        ),
    )
    failed = (MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")
    created = [sim.create_message(outcome=failed).id for _ in range(args.failed_messages)]
    if args.ids_out:
        await asyncio.to_thread(write_lines, args.ids_out, created)
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
