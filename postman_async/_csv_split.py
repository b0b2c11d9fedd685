"""A batch CSV split into files the API accepts, while it is read: never more than one part
in memory, whatever the input's size.

Every record is checked as the API checks it (:func:`validation.check_csv_record`), and each
part is the header followed by whole records, copied byte for byte from the input (a quoted
value over several lines stays in one part). A part holds at most ``max_rows`` message rows
and ``max_bytes`` bytes, header included. An input that needs no split comes out as itself,
less blank lines and a byte order mark.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import IO

import attrs

from .errors import ValidationError
from .validation import RowErrors, check_csv_header, check_csv_record

#: The API's limit per file: "max file size is 40MB". Parts are cut at 40,000,000 bytes, the
#: smaller reading of "40MB", so the server accepts them either way.
MAX_PART_BYTES = 40_000_000
#: The test environment's limit of rows per file (reference §2.3).
TEST_ENVIRONMENT_ROWS = 20
#: A physical line longer than this is refused (no message row is anywhere near it).
MAX_LINE_BYTES = 1 << 20
READ_CHUNK = 1 << 16


@attrs.frozen
class CsvPart:
    """One file of a split upload: its bytes (empty when only counted), the index of its
    first message row in the whole input (1-based) and how many rows it holds."""

    data: bytes
    first_row: int
    rows: int

    @property
    def last_row(self) -> int:
        """The index of the part's last row in the input (1-based)."""
        return self.first_row + self.rows - 1


class _Lines:
    """The physical lines of a binary stream as text for the csv module, read in chunks;
    the raw bytes of the lines handed out since the last :meth:`take` are kept."""

    def __init__(self, handle: IO[bytes]) -> None:
        self._handle = handle
        self._buffer = b""
        self._pos = 0
        self._eof = False
        self.number = 0
        self._raw: list[bytes] = []

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self._next_raw()
        if not raw:
            raise StopIteration
        self.number += 1
        if self.number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]  # a byte order mark
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ValidationError("csv", f"is not UTF-8 text (line {self.number})") from None
        self._raw.append(raw)
        return text

    def _next_raw(self) -> bytes:
        while True:
            end = self._buffer.find(b"\n", self._pos)
            if end >= 0:
                line = self._buffer[self._pos : end + 1]
                self._pos = end + 1
                return self._bounded(line)
            rest = self._buffer[self._pos :]
            self._bounded(rest)
            if self._eof:
                self._buffer, self._pos = b"", 0
                return rest
            chunk = self._handle.read(READ_CHUNK)
            self._eof = not chunk
            self._buffer, self._pos = rest + chunk, 0

    def _bounded(self, line: bytes) -> bytes:
        if len(line) > MAX_LINE_BYTES:
            raise ValidationError(
                "csv", f"line {self.number + 1} is longer than {MAX_LINE_BYTES:,} bytes"
            )
        return line

    def take(self) -> bytes:
        """The raw bytes of the lines handed out since the last call."""
        data = b"".join(self._raw)
        self._raw.clear()
        return data


def text_lines(data: bytes) -> Iterator[str]:
    """The lines of CSV bytes as text for the csv module, one at a time (a large file is
    never held as one string)."""
    return _Lines(io.BytesIO(data))


def split_csv(
    handle: IO[bytes], *, max_rows: int | None, max_bytes: int = MAX_PART_BYTES, build: bool = True
) -> Iterator[CsvPart]:
    """The parts of the CSV read from ``handle``, checked as they are read. ``build=False``
    only checks and counts (each part's ``data`` is empty). Raises :class:`ValidationError`
    for what the API would refuse, or a row that cannot fit in a file."""
    lines = _Lines(handle)
    reader = csv.reader(lines)
    # The checking pass (build=False) names every bad row; the building pass, which runs only
    # after a clean check, stops at the first (nothing is uploaded from a file with one).
    errors = None if build else RowErrors()
    check = check_csv_record if errors is None else errors.check
    try:
        columns = check_csv_header(next(reader, None))
        head = lines.take()
        if not head.endswith(b"\n"):
            head += b"\r\n"
        room = max_bytes - len(head)
        held: list[bytes] = []
        size = rows = 0
        first = 1
        for number, record in enumerate(reader, start=2):
            raw = lines.take()
            if not check(columns, record, number):
                continue
            if len(raw) > room:
                raise ValidationError(
                    "csv", f"row {number} does not fit in one file of {max_bytes:,} bytes"
                )
            if rows and (size + len(raw) > room or (max_rows is not None and rows >= max_rows)):
                yield CsvPart(head + b"".join(held) if build else b"", first, rows)
                held, size, first, rows = [], 0, first + rows, 0
            if build:
                held.append(raw)
            size += len(raw)
            rows += 1
    except csv.Error as exc:
        raise ValidationError("csv", f"cannot be parsed: {exc}") from exc
    if errors is not None:
        errors.raise_if_any()
    if rows == 0:
        raise ValidationError("csv", "has no message rows")
    yield CsvPart(head + b"".join(held) if build else b"", first, rows)


def count_parts(handle: IO[bytes], *, max_rows: int | None, max_bytes: int) -> int:
    """Check the whole input and count its parts (nothing is kept)."""
    return sum(1 for _ in split_csv(handle, max_rows=max_rows, max_bytes=max_bytes, build=False))
