"""The everyday commands: demo, send, send-batch, status, list, simulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

from .._console import Output
from ..converter import encode
from ..demo import DemoOptions, progress_line, run_demo
from ..errors import NotFoundError, PostmanError
from ..models import Message, MessageStatus
from ..testing.gateway import Faults
from ..testing.network import Network
from ..testing.simulator import PostmanSimulator, campaign_summary
from ..validation import normalize_recipient
from ._common import MESSAGE_COLUMNS, client, message_row, when, write_lines
from ._exit import EXIT_NOT_FOUND, EXIT_PARTIAL, CliError


async def cmd_demo(args: argparse.Namespace, out: Output) -> int:
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
    values = _values(args.value)
    async with client(args) as api:
        message = await api.send_message(args.recipient, args.language, values)
    _show_messages(out, "sent", [message])
    return 0


async def cmd_send_batch(args: argparse.Namespace, out: Output) -> int:
    async with client(args) as api:  # the CSV is read and checked before anything is sent
        result = await api.send_batch(Path(args.csv_file), filename=_csv_name(args.csv_file))
    if out.for_scripts:
        out.json(encode(result))
    else:
        out.plain(result.batch_id)  # alone on stdout: BATCH=$(postman-async send-batch f.csv)
        print(f"batch {result.batch_id} created from {args.csv_file}", file=sys.stderr)
    return 0


def _csv_name(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name if name.endswith(".csv") and '"' not in name else "messages.csv"


async def cmd_status(args: argparse.Namespace, out: Output) -> int:
    found: list[Message] = []
    missing: list[str] = []
    async with client(args) as api:
        for message_id in dict.fromkeys(args.message_ids):
            try:
                found.append(await api.get_message(message_id))
            except NotFoundError:
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


async def cmd_list(args: argparse.Namespace, out: Output) -> int:
    search = _digits(args.search) if args.search else None
    wanted = MessageStatus(args.status) if args.status else None
    messages: list[Message] = []
    async with client(args) as api:
        page_size = 1000 if wanted else min(args.limit, 1000)
        source = (
            api.list_batch_messages(args.batch, page_size=page_size, search=search)
            if args.batch
            else api.list_messages(page_size=page_size, search=search)
        )
        async for message in source:
            if wanted is not None and message.latest_status != wanted:
                continue
            if args.ids_only:
                out.plain(message.id)  # streamed: a pipe starts working at once
            messages.append(message)
            if len(messages) >= args.limit:
                break
    if args.ids_only:
        return 0 if messages else EXIT_NOT_FOUND
    title = f"batch {args.batch}" if args.batch else "campaign messages"
    if out.as_json:
        out.json([encode(m) for m in messages])
    else:
        shown = f"{len(messages)} shown" + (f", status {wanted}" if wanted else "")
        out.table(
            f"{title} (newest first, {shown})", MESSAGE_COLUMNS, [message_row(m) for m in messages]
        )
    return 0


def _digits(search: str) -> str:
    """``+65 9123`` as the API stores it: ``659123``."""
    text = search.replace(" ", "").replace("-", "")
    try:
        return normalize_recipient(text) if text.startswith("+") else text
    except PostmanError:
        return text.lstrip("+")


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
