"""``send`` and ``send-batch``: what was created, what was not, and how that was known.

A send or upload whose answer was lost is read back by the client. The commands say which it
was: ``created`` (or ``created (confirmed by read-back)``, exit 0), ``not sent (not found at
HH:MM:SS)`` (exit 6), several candidates or an unknown outcome (exit 1, the candidates
listed: check them before sending again), a file already uploaded (exit 2, the batch named;
``--again`` sends it anyway), or a split upload stopped part-way (exit 7, the batches sent
printed on stdout).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from .._console import Output
from ..converter import encode
from ..errors import AmbiguousSendError, DuplicateUploadError, NotSentError, PartialUploadError
from ..models import BatchPart, BatchSendResult, Message
from ._common import MESSAGE_COLUMNS, client, message_row, when
from ._exit import EXIT_INPUT, EXIT_NOT_FOUND, EXIT_OTHER, EXIT_PARTIAL, CliError

CREATED = "created"
CONFIRMED = "created (confirmed by read-back)"


async def send(args: argparse.Namespace, out: Output, values: Mapping[str, str]) -> int:
    async with client(args) as api:
        try:
            message = await api.send_message(args.recipient, args.language, values)
        except (NotSentError, AmbiguousSendError) as exc:
            raise _told(exc) from exc
    if out.as_json:
        out.json(encode(message))
    else:
        title = CONFIRMED if message.confirmed_by_readback else CREATED
        out.table(title, MESSAGE_COLUMNS, [message_row(message)])
    return 0


async def send_batch(args: argparse.Namespace, out: Output) -> int:
    window = None if args.again or not args.guard_window else args.guard_window * 3600
    async with client(args) as api:  # the CSV is read and checked before anything is sent
        if args.max_batch_rows is not None:
            api.max_batch_rows = args.max_batch_rows
        try:
            result = await api.send_batch(
                Path(args.csv_file), filename=csv_name(args.csv_file), guard_window=window
            )
        except PartialUploadError as exc:
            return _partial(out, args.csv_file, exc)
        except DuplicateUploadError as exc:  # refused before it was sent
            text = str(exc).replace(
                "send it anyway with guard_window=None (--again on the command line)",
                "send it anyway with --again",
            )
            raise CliError(text, EXIT_INPUT) from exc
        except (NotSentError, AmbiguousSendError) as exc:
            raise _told(exc) from exc
    if out.for_scripts:
        out.json(encode(result))
        return 0
    for part in result.parts or (BatchPart(result.batch_id, 1, 0),):
        out.plain(part.batch_id)  # alone on stdout: BATCH=$(postman-async send-batch f.csv)
    _tell_parts(args.csv_file, result)
    return 0


def csv_name(path: str) -> str:
    """The file name sent with the upload: the file's own, if it is a plain ``.csv`` name."""
    name = path.rsplit("/", 1)[-1]
    return name if name.endswith(".csv") and '"' not in name else "messages.csv"


def _tell_parts(path: str, result: BatchSendResult) -> None:
    split = len(result.parts) > 1
    for part in result.parts:
        state = CONFIRMED if part.confirmed_by_readback else CREATED
        rows = f", rows {part.first_row}-{part.last_row}" if split else ""
        print(f"batch {part.batch_id} {state} from {path}{rows}", file=sys.stderr)
    if split:
        print(
            f"{path} was split into {len(result.parts)} batches ({result.rows} rows): the API "
            "takes at most 40 MB (and, in the test environment, 20 rows) per file",
            file=sys.stderr,
        )


def _partial(out: Output, path: str, exc: PartialUploadError) -> int:
    """The batches sent before the upload stopped: on stdout (scripts keep them), then why."""
    sent: list[Any] = [encode(p) for p in exc.sent]
    if out.for_scripts:
        out.json({"parts": sent, "stoppedAtPart": exc.part, "partsTotal": exc.parts})
    else:
        for part in exc.sent:
            out.plain(part.batch_id)
            print(f"batch {part.batch_id} {CREATED} from {path}", file=sys.stderr)
    cause = exc.error
    if isinstance(cause, (NotSentError, AmbiguousSendError)):
        print(f"postman-async: part {exc.part}: {_told(cause)}", file=sys.stderr)
    print(f"postman-async: partial: {exc}", file=sys.stderr)
    return EXIT_PARTIAL


def _told(exc: NotSentError | AmbiguousSendError) -> CliError:
    """What the command says (and its exit code) for a send or upload not found, or with
    several candidates, after its answer was lost."""
    cause = type(exc.cause).__name__ if exc.cause is not None else "no answer"
    if isinstance(exc, NotSentError):
        digits = (exc.recipient or "")[-4:]
        return CliError(
            f"not sent (not found at {_clock(exc.searched_at)}): its answer was lost ({cause}), "
            f"and {exc.reads} read(s) of {exc.recipient}'s messages created since "
            f"{_clock(exc.searched_from)} found nothing. Not found by then is not proof that it "
            "was not sent (a request still in flight could create it later); it was not "
            f"re-sent. Check with `postman-async list --search {digits}` before sending again.",
            EXIT_NOT_FOUND,
        )
    listed = "; ".join(_candidate(c) for c in exc.candidates)
    return CliError(
        f"outcome unknown: its answer was lost ({cause}), and {len(exc.candidates)} "
        f"candidate(s) could be it: {listed}. Nothing was re-sent; check them before "
        "sending again.",
        EXIT_OTHER,
    )


def _candidate(candidate: object) -> str:
    if isinstance(candidate, Message):
        return f"message {candidate.id} (created {when(candidate.created_at) or 'at ?'})"
    if isinstance(candidate, BatchSendResult):
        return f"batch {candidate.batch_id}"
    return str(candidate)


def _clock(moment: datetime | None) -> str:
    return moment.astimezone().strftime("%H:%M:%S") if moment else "an unknown time"
