"""A batch send of any size: checked whole before anything is sent, then split into files the
API accepts (at most 40 MB, and ``max_batch_rows`` rows, each) and uploaded one part at a
time. Each part is its own batch, decided on its own: guarded against a second upload when
asked, and read back if its answer is lost. A part that fails stops the rest, and the parts
already sent are never hidden: :class:`PartialUploadError` carries them.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import attrs

from . import _csv_split
from ._batch_readback import refuse_if_uploaded, upload
from ._csv_input import CsvStream, open_csv
from ._csv_split import TEST_ENVIRONMENT_ROWS, CsvPart, count_parts, split_csv
from .errors import (
    NotSentError,
    OutcomeUnknownError,
    PartialUploadError,
    PostmanError,
    ValidationError,
)
from .models import BatchPart, BatchSendResult, Priority
from .protocol import send_batch_request
from .readback import sent_batch_from_csv
from .validation import is_loopback_host, validate_base_url

if TYPE_CHECKING:
    from .client import PostmanClient

logger = logging.getLogger("postman_async")


def max_batch_rows_for(
    given: int | None, api_key: str, base_url: str, environment: str | None
) -> int | None:
    """The rows one batch file may hold: ``given``, else 20 in the test environment (its
    cap): named (``environment="test"``), or chosen by a ``key_test_`` key while the base URL
    is not a loopback host (the simulator, or another local double, has limits of its own).
    No limit otherwise: none is documented for production."""
    if given is not None:
        if not isinstance(given, int) or isinstance(given, bool) or given < 1:
            raise ValidationError("max_batch_rows", "must be a whole number >= 1, or None")
        return given
    if environment is not None:
        return TEST_ENVIRONMENT_ROWS if environment == "test" else None
    local = is_loopback_host(validate_base_url(base_url).host)
    return TEST_ENVIRONMENT_ROWS if api_key.startswith("key_test_") and not local else None


def guard_span(value: object) -> timedelta | None:
    """``guard_window`` as a span: ``None`` (no guard), a :class:`timedelta` or seconds, > 0."""
    if value is None:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ValidationError("guard_window", "must be None, a timedelta or seconds")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValidationError("guard_window", "must be more than 0 (None turns the guard off)")
    return timedelta(seconds=seconds)


async def send_batch(
    client: PostmanClient,
    source: Any,
    *,
    filename: str,
    priority: Priority | None,
    guard_window: object = None,
) -> BatchSendResult:
    """Check, split and upload (see the module docstring)."""
    window = guard_span(guard_window)
    stream = await open_csv(source)
    try:
        limits = (client.max_batch_rows, _csv_split.MAX_PART_BYTES)
        total = await asyncio.to_thread(_check_whole, stream, limits)
        parts = split_csv(stream.handle, max_rows=limits[0], max_bytes=limits[1])
        return await _Upload(client, filename, priority, window, total).run(parts)
    finally:
        stream.close()


def _check_whole(stream: CsvStream, limits: tuple[int | None, int]) -> int:
    """Read the whole input once (every record checked) and count its parts; rewound."""
    stream.rewind()
    try:
        return count_parts(stream.handle, max_rows=limits[0], max_bytes=limits[1])
    finally:
        stream.rewind()


@attrs.define
class _Upload:
    """One ``send_batch`` call: where it sends, and the parts done so far."""

    client: PostmanClient
    filename: str
    priority: Priority | None
    window: timedelta | None
    total: int
    done: list[BatchPart] = attrs.field(factory=list)

    async def run(self, parts: Iterator[CsvPart]) -> BatchSendResult:
        try:
            for index in range(1, self.total + 1):
                part = await self._next(parts, index)
                try:
                    result = await self._upload(part, index)
                except PostmanError as exc:
                    if not self.done:
                        raise
                    raise _stopped(exc, self.done, index, self.total, part) from exc
                self.done.append(
                    BatchPart(
                        result.batch_id, part.first_row, part.rows, result.confirmed_by_readback
                    )
                )
        except asyncio.CancelledError:
            if self.done:
                logger.warning("batch upload cancelled after sending %s", _listed(self.done))
            raise
        if self.total > 1:
            logger.info("batch upload split into %d files: %s", self.total, _listed(self.done))
        return BatchSendResult(
            batch_id=self.done[0].batch_id,
            confirmed_by_readback=any(p.confirmed_by_readback for p in self.done),
            parts=tuple(self.done),
        )

    async def _next(self, parts: Iterator[CsvPart], index: int) -> CsvPart:
        """The next part, read and checked in a thread (the input was checked whole before)."""
        try:
            part = await asyncio.to_thread(next, parts, None)
            if part is None:
                raise ValidationError("csv", "changed while it was being sent (fewer rows)")
        except PostmanError as exc:
            if not self.done:
                raise
            gone = CsvPart(b"", self.done[-1].last_row + 1, 0)
            raise _stopped(exc, self.done, index, self.total, gone) from exc
        return part

    async def _upload(self, part: CsvPart, index: int) -> BatchSendResult:
        """Upload one part: guarded first when a window is set."""
        client = self.client
        what = _label(part, index, self.total)
        if self.window is not None:
            sent = await asyncio.to_thread(sent_batch_from_csv, part.data, light=True)
            mine = {p.batch_id for p in self.done}
            await refuse_if_uploaded(
                client, sent, self.window, self.priority, what=what, part=index, mine=mine
            )
        name = _name(self.filename, index, self.total)
        request = send_batch_request(client.campaign_id, part.data, name)
        return await upload(client, request, self.priority, what)


def _label(part: CsvPart, index: int, total: int) -> str:
    rows = f"rows {part.first_row}-{part.last_row}" if part.rows > 1 else f"row {part.first_row}"
    if total == 1:
        return f"batch upload of {part.rows} row(s)"
    return f"part {index} of {total} of the batch upload ({rows})"


def _name(filename: str, index: int, total: int) -> str:
    """Each part's file name: ``people.csv`` alone, else ``people-2-of-3.csv``."""
    if total == 1:
        return filename
    return f"{filename.removesuffix('.csv')}-{index}-of-{total}.csv"


def _listed(done: list[BatchPart]) -> str:
    return ", ".join(f"{p.batch_id} (rows {p.first_row}-{p.last_row})" for p in done)


def _stopped(
    error: PostmanError, done: list[BatchPart], index: int, total: int, part: CsvPart
) -> PartialUploadError:
    if isinstance(error, NotSentError):
        state = f"part {index} was not found on the server by reading back"
    elif isinstance(error, OutcomeUnknownError):
        state = f"part {index} may have been created (its outcome is unknown: check it)"
    else:
        state = f"part {index} was not created"
    rest = f"; parts {index + 1}-{total} were not sent" if index < total else ""
    return PartialUploadError(
        f"the batch upload stopped at part {index} of {total} (rows {part.first_row} on): "
        f"{error}. Sent before it: {_listed(done)}. {state}{rest}",
        sent=tuple(done),
        part=index,
        parts=total,
        first_row=part.first_row,
        error=error,
    )
