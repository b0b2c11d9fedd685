"""What the commands share: the client from the environment, reading IDs, rendering rows."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from .._console import Output
from ..client import PostmanClient
from ..models import Message
from ._exit import CliError

MESSAGE_COLUMNS = ["id", "recipient", "status", "attempts", "last error", "created"]


def output(args: argparse.Namespace) -> Output:
    return Output(fmt="json" if getattr(args, "json", False) else getattr(args, "format", "table"))


def api_key(args: argparse.Namespace) -> str:
    """The key from ``--api-key-file`` / ``POSTMAN_API_KEY_FILE``, else ``POSTMAN_API_KEY``."""
    path = getattr(args, "api_key_file", None)
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                key = handle.read().strip()
        except OSError as exc:
            raise CliError(f"cannot read the API key file {path}: {exc.strerror}") from exc
        if not key:
            raise CliError(f"the API key file {path} is empty")
        return key
    from_env = os.environ.get("POSTMAN_API_KEY")
    if not from_env:
        raise CliError("set POSTMAN_API_KEY, or give --api-key-file, for the campaign's API key")
    return from_env


def client(args: argparse.Namespace) -> PostmanClient:
    key = api_key(args)
    if not args.campaign:
        raise CliError("give --campaign or set POSTMAN_CAMPAIGN_ID")
    if args.base_url and not args.base_url.rstrip("/").endswith("/api/v2"):
        print(
            f"postman-async: hint: the API's base URL ends in /api/v2; {args.base_url} does "
            "not, so every call may answer 404",
            file=sys.stderr,
        )
    return PostmanClient(
        api_key=key,
        campaign_id=args.campaign,
        base_url=args.base_url,
        rate_limit=args.rate_limit,
        timeout=args.timeout,
        max_retries=args.max_retries,
    )


async def ids(args: argparse.Namespace) -> AsyncIterator[str]:
    """The IDs given as arguments, then those of ``--ids-file`` (or stdin), streamed."""
    for message_id in args.message_ids:
        yield message_id
    if args.ids_file:
        async for line in lines_of(args.ids_file):
            yield line


async def lines_of(path: str) -> AsyncIterator[str]:
    """A file's (or stdin's, for ``-``) non-empty lines that are not ``#`` comments,
    stripped and streamed (never the whole file in memory)."""
    handle: Any = sys.stdin if path == "-" else await asyncio.to_thread(_open, path)
    try:
        while chunk := await asyncio.to_thread(handle.readlines, 1 << 16):
            for line in chunk:
                text = line.strip()
                if text and not text.startswith("#"):
                    yield text
    finally:
        if handle is not sys.stdin:
            handle.close()


def _open(path: str) -> Any:
    try:
        return open(path, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from exc


def write_lines(path: str, lines: Sequence[str]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{line}\n" for line in lines)


def when(moment: datetime | None) -> str:
    """A short local timestamp."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def message_row(m: Message) -> list[Any]:
    return [
        m.id,
        m.recipient or "",
        m.latest_status or "",
        m.attempt_count if m.attempt_count is not None else "",
        last_error(m),
        when(m.created_at),
    ]


def last_error(m: Message) -> str:
    attempt = m.latest_attempt
    if attempt is not None and attempt.error_code:
        return (
            f"{attempt.error_type}/{attempt.error_code}"
            if attempt.error_type
            else attempt.error_code
        )
    if m.error:
        return m.error
    return "(not given in this listing)" if m.latest_status == "failure" else ""


def counts_text(counts: dict[str, int]) -> str:
    """``{"a": 1, "b": 2}`` as ``a 1, b 2`` (never a Python repr)."""
    return ", ".join(f"{key} {value}" for key, value in counts.items()) or "none"
