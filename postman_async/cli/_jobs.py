"""``postman-async job submit|status|report|cancel|worker``: crash-safe retry jobs in Redis,
run by any number of worker processes (``pip install "postman-async[taskiq]"``).

Redis: ``--redis`` or ``POSTMAN_ASYNC_REDIS_URL`` (default ``redis://127.0.0.1:6379/0``).
"""

from __future__ import annotations

import argparse
import math
import os
import urllib.parse
from collections.abc import AsyncIterator, Callable
from typing import Any

from .._console import Output
from .._redact import redact_text, redact_url
from ..models import MessageStatus
from ..reports import MessageState
from ._common import counts_text, lines_of
from ._exit import EXIT_AUTH, EXIT_INPUT, EXIT_LOST, EXIT_NETWORK, EXIT_NOT_FOUND, CliError

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


class JobCliError(CliError):
    """A job command cannot go on: bad input (exit 2) or Redis unreachable (exit 8)."""


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number >= 1 (0 would mean "unlimited" to taskiq)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _seconds_or_now(text: str) -> float:
    """An argparse type: a finite number of seconds >= 0 (0: expire at once)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {text!r}")
    return value


def add_job_parser(
    sub: Any, common: argparse.ArgumentParser, number: Callable[[str], float]
) -> None:
    """The ``job`` command and its actions (``number``: the CLI's positive-number type)."""
    job = sub.add_parser("job", help="crash-safe retry jobs run by worker processes (Redis)")
    actions = job.add_subparsers(dest="job_command", required=True)
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument(
        "--redis",
        default=os.environ.get("POSTMAN_ASYNC_REDIS_URL", DEFAULT_REDIS),
        help="Redis URL (default: $POSTMAN_ASYNC_REDIS_URL or %(default)s)",
    )
    submit = actions.add_parser(
        "submit",
        parents=[common, where],
        help="stream IDs into a job and start it",
        description="Lines are 'ID' or 'ID,ATTEMPTS' (the attempt count last read, which "
        "makes recovery after a worker crash exact). Re-running the same submit after a "
        "crash continues where it stopped. The job names its campaign only: each worker "
        "sends with its own key and base URL for it, and refuses a campaign it does not "
        "serve. The job's rate and HTTP timeout are set here (workers have no rate option). "
        "Submitting a job again after Redis lost it starts it anew, reading each ID before "
        "any POST.",
    )
    submit.add_argument("job_id")
    submit.add_argument(
        "--campaign",
        default=os.environ.get("POSTMAN_CAMPAIGN_ID"),
        help="campaign id (default: $POSTMAN_CAMPAIGN_ID)",
    )
    submit.add_argument(
        "--rate-limit", type=number, default=10.0, help="the campaign's calls/s (default 10)"
    )
    submit.add_argument(
        "--timeout",
        type=number,
        default=30.0,
        help="seconds per HTTP call; a crashed worker's chunk is taken over after 2 s plus this",
    )
    submit.add_argument("--ids-file", required=True, help="file of IDs ('-' for stdin)")
    submit.add_argument("--chunks", type=int, default=64, help="units of work (default 64)")
    submit.add_argument(
        "--budget-share", type=float, default=1.0, help="share of the campaign's rate (0..1]"
    )
    status = actions.add_parser("status", parents=[common, where], help="a job's progress")
    status.add_argument("job_id")
    report = actions.add_parser("report", parents=[common, where], help="write a job's results")
    report.add_argument("job_id")
    report.add_argument("--out", required=True, help="file to write")
    report.add_argument(
        "--file-format",
        choices=("ndjson", "json"),
        default="ndjson",
        help="NDJSON (a result per line) or RetryReport's JSON shape",
    )
    report.add_argument(
        "--expire-after",
        type=_seconds_or_now,
        default=86400.0,
        metavar="SECONDS",
        help="let the job's keys expire this long after a finished job's report (default 1 day)",
    )
    cancel = actions.add_parser("cancel", parents=[common, where], help="stop a job")
    cancel.add_argument("job_id")
    worker = actions.add_parser(
        "worker",
        parents=[where],
        help="run a worker for the campaigns of its own configuration",
        description="Serves the campaigns of its own configuration only: --campaigns-file "
        '(or $POSTMAN_ASYNC_CAMPAIGNS_FILE), JSON {"campaigns": [{"campaign_id": ..., '
        '"api_key_file": ..., "base_url": ...}]}, or one campaign from '
        "$POSTMAN_CAMPAIGN_ID, $POSTMAN_API_KEY (or $POSTMAN_API_KEY_FILE) and "
        "$POSTMAN_BASE_URL. A job for any other campaign or base URL is refused.",
    )
    worker.add_argument("--concurrency", type=_at_least_one, default=16, help="chunks run at once")
    worker.add_argument("--supervise-every", type=number, default=5.0, metavar="SECONDS")
    worker.add_argument(
        "--campaigns-file",
        default=os.environ.get("POSTMAN_ASYNC_CAMPAIGNS_FILE"),
        help="JSON file of the campaigns served (default: $POSTMAN_ASYNC_CAMPAIGNS_FILE)",
    )


async def cmd_job(args: argparse.Namespace, out: Output) -> int:
    try:
        import redis.asyncio as aioredis
        from redis.exceptions import AuthenticationError, AuthorizationError, RedisError

        from ..jobs import JobError, JobLostError, JobStore
        from ..jobs.records_local import LocalJobRecords

        # Only a submit delivers chunks: the other commands skip taskiq's import (~0.3 s).
        kicks = args.job_command == "submit"
        if kicks:
            from ..jobs import taskiq_app
    except ImportError as exc:
        raise JobCliError(_missing(exc)) from exc
    check_redis_url(args.redis)
    if kicks:
        taskiq_app.configure(args.redis)
    redis = aioredis.Redis.from_url(args.redis)
    try:
        # This host's records of its jobs tell a job that Redis lost whole (no trace left).
        store = JobStore(redis, args.job_id, records=LocalJobRecords(redis))
        handler = {"submit": _submit, "status": _status, "report": _report, "cancel": _cancel}
        return await handler[args.job_command](args, store, out)
    except JobLostError as exc:
        raise JobCliError(str(exc), code=EXIT_LOST) from exc
    except JobError as exc:
        unknown = "(never created, or expired)" in str(exc)
        raise JobCliError(str(exc), code=EXIT_NOT_FOUND if unknown else EXIT_INPUT) from exc
    except RedisError as exc:
        where = redact_url(args.redis)
        refused = isinstance(exc, (AuthenticationError, AuthorizationError))
        raise JobCliError(
            f"Redis at {where}: {redact_text(str(exc))}",
            code=EXIT_AUTH if refused else EXIT_NETWORK,
        ) from exc
    finally:
        await redis.aclose()
        if kicks:
            await taskiq_app.broker.connection_pool.disconnect()


def run_worker(args: argparse.Namespace) -> int:
    """``job worker``: it owns its event loop and signal handling (SIGTERM: finish, exit)."""
    try:
        from ..jobs import taskiq_app, worker
    except ImportError as exc:
        raise JobCliError(str(exc)) from exc
    check_redis_url(args.redis)
    taskiq_app.configure(args.redis)
    return worker.run(args.concurrency, args.supervise_every, args.campaigns_file)


async def _submit(args: argparse.Namespace, store: Any, out: Output) -> int:
    from ..jobs import JobSettings, submit_job

    if not args.campaign:
        raise JobCliError("give --campaign or set POSTMAN_CAMPAIGN_ID")
    settings = JobSettings(
        campaign_id=args.campaign,
        chunks=args.chunks,
        rate=args.rate_limit,
        budget_share=args.budget_share,
        http_timeout=args.timeout,
    )
    progress = await submit_job(
        store.redis, store.job_id, _lines(args.ids_file), settings, records=store.records
    )
    _show(out, progress.to_dict())
    return 0


async def _status(args: argparse.Namespace, store: Any, out: Output) -> int:
    progress = await store.progress()
    _show(out, progress.to_dict())
    return EXIT_AUTH if progress.state == "refused" else 0


async def _report(args: argparse.Namespace, store: Any, out: Output) -> int:
    progress = await store.progress()
    if args.file_format == "ndjson":
        count = await store.write_ndjson(args.out)
    else:
        count = await store.write_report_json(args.out)
    if progress.finished:
        store.records.forget(store.job_id)
        await store.expire(args.expire_after)
    note = "" if progress.finished else " (the job is still running: a partial report)"
    if out.as_json:
        partial = not progress.finished
        out.json({"jobId": store.job_id, "results": count, "path": args.out, "partial": partial})
    else:
        out.line(f"{count} results written to {args.out}{note}")
    return 0


async def _cancel(args: argparse.Namespace, store: Any, out: Output) -> int:
    from ..jobs import JobCorruptError

    try:
        before = await store.progress()
    except JobCorruptError as exc:  # its settings do not parse: cancelling needs none
        await store.cancel()
        out.line(f"job {store.job_id} cancelled; its record is corrupt ({exc.detail})")
        return 0
    if before.finished:
        if not out.as_json:
            out.line(f"job {store.job_id} had already {before.state}; nothing to cancel")
        _show(out, before.to_dict())
        return 0
    await store.cancel()
    _show(out, (await store.progress()).to_dict())
    return 0


def _missing(exc: ImportError) -> str:
    """What to install, for a job command whose dependency is missing."""
    if (exc.name or "").split(".")[0] == "redis":
        return (
            'job status, report and cancel need redis-py: pip install "postman-async[redis]" '
            '(job submit and worker: "postman-async[taskiq]")'
        )
    return str(exc)


def check_redis_url(url: str) -> None:
    """Refuse a malformed Redis URL before a library quotes a piece of its password."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        db = parts.path.lstrip("/")
        well_formed = parts.scheme in ("redis", "rediss", "unix") and (
            parts.scheme == "unix" or (bool(parts.hostname) and (db == "" or db.isdigit()))
        )
    except ValueError:
        well_formed = False
    if not well_formed:
        raise JobCliError(
            f"malformed Redis URL {redact_url(url)}: expected redis://host:port/db, with any "
            "password percent-encoded ('#', '/', '?' and '@' in it)"
        )


def _show(out: Output, data: dict[str, Any]) -> None:
    if out.as_json:
        out.json(data)
        return
    chunks = data["chunks"]
    counts = counts_text(data["counts"]) if data["counts"] else "none yet"
    eta = data["etaSeconds"]
    out.line(
        f"job {data['jobId']}: {data['state']}; {data['done']} of {data['distinct']} IDs done "
        f"({counts}); {data['duplicates']} duplicates; {data['calls']} calls; chunks "
        f"{chunks['done']} done, {chunks['leased']} running, {chunks['pending']} waiting"
        + ("" if eta is None else f"; about {_duration(eta)} left at the campaign's rate")
    )
    for worker, reason in sorted(data.get("refusals", {}).items()):
        out.line(f"refused by worker {worker}: {reason}")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


async def _lines(path: str) -> AsyncIterator[object]:
    """IDs, or ``ID,ATTEMPTS`` (a known attempt count), from a file or stdin."""
    async for text in lines_of(path):
        message_id, _, attempts = text.partition(",")
        if attempts.strip().isdigit():
            yield MessageState(message_id.strip(), MessageStatus.FAILURE, int(attempts))
        else:
            yield text
