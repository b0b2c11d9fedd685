"""retry-batch: say what a batch retry would touch (and what depends on a cap not learned
yet), ask when it would spend attempts on errors a retry will not fix, then fire it once."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import attrs

from .._console import Output
from ..client import PostmanClient
from ..errors import PostmanError
from ..models import MessageStatus
from ..orchestrator import RetryOrchestrator
from ..reports import BatchRetryReport
from ..rules import NOT_WORTH_RETRYING, AttemptCap
from ._common import client, counts_text
from ._exit import EXIT_NOT_FIRED, CliError
from ._retry import write_json


@attrs.define
class BatchPlan:
    """What a batch retry would touch, from one read of the batch."""

    #: the attempt count of each failed message
    failed: list[int] = attrs.field(factory=list)
    created: int = 0
    not_worth: dict[str, int] = attrs.field(factory=dict)
    #: the batch's status, read from one of its messages (listings do not carry it)
    status: str | None = None


async def cmd_retry_batch(args: argparse.Namespace, out: Output) -> int:
    async with client(args) as api:
        plan = await read_plan(api, args.batch_id)
        out.line(describe_plan(args.batch_id, plan, api.attempt_cap))
        if args.dry_run:
            return 0
        if plan.not_worth and not args.yes and not _confirm(plan.not_worth):
            out.line("not fired: declined")
            return EXIT_NOT_FIRED
        report = await RetryOrchestrator(api).retry_batch(
            args.batch_id, wait_unresolved=args.wait_unresolved
        )
    if args.report:
        await asyncio.to_thread(write_json, args.report, report.to_dict())
    if out.as_json:
        out.json(report.to_dict())
    else:
        _show(out, report, plan)
    return 0 if report.fired else EXIT_NOT_FIRED


def _show(out: Output, report: BatchRetryReport, plan: BatchPlan) -> None:
    """The batch ID alone on its title line; the figures in a table without IDs."""
    status = report.batch_status or plan.status
    rows: list[list[Any]] = [
        ["fired", "yes" if report.fired else "no"],
        ["reason", report.reason.value],
        *([["batch status (read before)", status]] if status else []),
        ["messages", report.messages],
        ["retried", len(report.retried_ids)],
        ["exhausted", len(report.exhausted_ids)],
        ["unresolved", len(report.unresolved_ids)],
        ["calls", report.calls],
    ]
    out.table(f"batch {report.batch_id}", ["", "value"], rows)
    if report.detail:
        out.line(report.detail)
    if report.error is not None:
        out.line(f"server said: {report.error}")


async def read_plan(api: PostmanClient, batch_id: str) -> BatchPlan:
    """Read the batch (1 call per 1,000 messages), and its status from one of its messages
    (1 call)."""
    plan = BatchPlan()
    first: str | None = None
    async for message in api.list_batch_messages(batch_id, page_size=1000):
        first = first or message.id
        if message.latest_status == MessageStatus.CREATED:
            plan.created += 1
        if message.latest_status == MessageStatus.FAILURE:
            plan.failed.append(message.attempt_count or 0)
            code = message.latest_error_code
            if code in NOT_WORTH_RETRYING:
                plan.not_worth[code] = plan.not_worth.get(code, 0) + 1
    if first is not None:
        try:
            batch = (await api.get_message(first)).batch
        except PostmanError:
            batch = None  # only a display: the retry does not depend on it
        plan.status = str(batch.status) if batch is not None and batch.status else None
    return plan


def describe_plan(batch_id: str, plan: BatchPlan, cap: AttemptCap) -> str:
    """How many failed messages a batch retry would retry; those out of attempts; and, while
    the cap is not learned, how many of the count depend on it."""
    exhausted = [a for a in plan.failed if cap.refuses(a)]
    in_doubt = sorted({a for a in plan.failed if not cap.refuses(a) and not cap.allows(a)})
    doubtful = sum(1 for a in plan.failed if a in in_doubt)
    status = f" ({plan.status})" if plan.status else ""
    text = (
        f"batch {batch_id}{status}: {len(plan.failed) - len(exhausted)} failed messages "
        "would be retried"
    )
    if doubtful:
        counts = " or ".join(str(a) for a in in_doubt)
        text += (
            f" ({doubtful} of them have {counts} attempts: they count only if the server "
            f"allows another, and its cap is not learned yet; the docs allow 3 or 4)"
        )
    if exhausted:
        text += f"; {len(exhausted)} are out of attempts ({cap.describe()})"
    if plan.not_worth:
        text += (
            f"; {sum(plan.not_worth.values())} failed with errors a retry will not fix "
            f"({counts_text(plan.not_worth)}): each retry of those spends one of its attempts"
        )
    if plan.created:
        text += f"; {plan.created} still 'created' (it will not fire while they are)"
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
