"""settle: read, then retry what failed and is worth retrying, until every message is final
(or, in the load-test environment, pending at the aggregator for good)."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from .._console import Output, RecentRate
from ..client import PostmanClient
from ..environments import LOAD_TEST_NOTE
from ..orchestrator import RetryOrchestrator
from ..reports import SettleProgress, SettleReport
from ._common import client, ids
from ._exit import EXIT_INTERRUPTED, EXIT_NOT_FOUND, EXIT_PARTIAL, CliError
from ._retry import interruptible, write_json


async def cmd_settle(args: argparse.Namespace, out: Output) -> int:
    message_ids = [i async for i in ids(args)]
    if not message_ids and not args.batch:
        raise CliError("give message IDs, --ids-file or --batch")
    async with client(args) as api:
        run = asyncio.ensure_future(_settle(api, args, message_ids, out))

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
        parked = [i for i in settle.unsettled if api.environment.is_parked(settle.states[i].status)]
    data = _settle_dict(settle)
    if parked:
        data["loadTest"] = {"note": LOAD_TEST_NOTE, "pendingAtAggregator": len(parked)}
    if args.report:
        await asyncio.to_thread(write_json, args.report, data)
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
    if parked:
        out.line(
            f"{LOAD_TEST_NOTE}: {len(parked)} messages are pending at the aggregator, where "
            "they stay (never success, not charged)"
        )
    if not settle.states:
        return EXIT_NOT_FOUND if settle.not_found or message_ids or args.batch else 0
    unsettled = len(settle.unsettled) - len(parked)
    return EXIT_PARTIAL if unsettled or settle.not_found else 0


async def _settle(
    api: PostmanClient, args: argparse.Namespace, message_ids: list[str], out: Output
) -> SettleReport:
    """The run, with a live line: round, phase, final of known, calls per second over the
    last seconds (never above the budget) and elapsed. No ETA: how long delivery takes is
    not the client's to know."""
    status = ["settling: reading state"]
    rate = RecentRate(api.calls)
    started = time.monotonic()

    def line() -> str:
        per_second = rate.update(api.calls)
        return (
            f"{status[0]}; {per_second:.1f} calls/s (last {rate.seconds}s); "
            f"elapsed {time.monotonic() - started:.0f}s"
        )

    with out.live(line) as refresh:

        def show(progress: SettleProgress) -> None:
            status[0] = progress.describe()
            refresh()

        return await RetryOrchestrator(api).retry_until_settled(
            message_ids, batch_ids=args.batch, timeout=args.timeout_total, on_progress=show
        )


def _settle_dict(settle: SettleReport) -> dict[str, Any]:
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
