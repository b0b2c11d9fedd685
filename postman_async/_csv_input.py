"""Where a batch's CSV comes from: rows, bytes or text, a path, or an open file.

Every source becomes a stream that can be read twice: once to check the whole input before
anything is sent (the API's validation is all-or-nothing, and so is ours), once to split it
into files while uploading. A regular file is read in place, twice, never whole in memory.
What cannot be read twice (a pipe, an unseekable or text stream, rows) is copied first into
a private temporary file (memory up to 40 MB, then the temp directory, mode 0600, deleted on
close), at most :data:`MAX_SPOOL_BYTES`.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import stat
import tempfile
from collections.abc import Iterable
from typing import IO, Any

import attrs

from ._csv_split import MAX_PART_BYTES, READ_CHUNK
from .errors import ValidationError
from .validation import csv_records

CsvSource = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes] | IO[str]

#: The most bytes copied from a source that cannot be read twice (a pipe, rows): 1 GiB.
MAX_SPOOL_BYTES = 1 << 30


@attrs.define
class CsvStream:
    """A CSV source as a binary stream that can be rewound to where it started."""

    handle: IO[bytes]
    name: str
    start: int = 0
    owned: bool = True

    def rewind(self) -> None:
        """Back to where the source started."""
        self.handle.seek(self.start)

    def close(self) -> None:
        """Close what this stream opened (never a file the caller passed in)."""
        if self.owned:
            self.handle.close()


async def open_csv(source: Any) -> CsvStream:
    """A stream of the batch's CSV, from rows, content, a path or an open file. Nothing is
    checked here but the source itself (see :func:`_csv_split.split_csv`).

    A path must name a regular file (any size) or a pipe; a directory or a device
    (``/dev/zero``) is refused before it is opened. Raises :class:`ValidationError`."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return CsvStream(io.BytesIO(bytes(source)), "the CSV")
    if isinstance(source, str):
        return CsvStream(io.BytesIO(source.encode("utf-8")), "the CSV")
    if isinstance(source, os.PathLike):
        path = os.fspath(source)
        try:
            return await asyncio.to_thread(_open_path, path)
        except OSError as exc:
            raise ValidationError("csv", f"cannot read {path!r}: {exc}") from exc
    if hasattr(source, "read"):
        return await asyncio.to_thread(_open_file, source)
    if isinstance(source, Iterable):
        return await asyncio.to_thread(_spool_rows, source)
    raise ValidationError("rows_or_csv", f"cannot make a CSV from {type(source).__name__}")


def _open_path(path: str) -> CsvStream:
    regular = _check_file(path, os.stat(path))
    handle = open(path, "rb")  # noqa: SIM115 - closed by CsvStream.close
    try:
        _check_file(path, os.fstat(handle.fileno()))  # the file opened is the one checked
        if not regular:
            with handle:
                return _spool(handle.read, repr(path))
    except BaseException:
        handle.close()
        raise
    return CsvStream(handle, repr(path))


def _check_file(path: str, info: os.stat_result) -> bool:
    """True for a regular file, False for a pipe; anything else is refused."""
    if stat.S_ISREG(info.st_mode):
        return True
    if stat.S_ISFIFO(info.st_mode):
        return False
    kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device?)"
    raise ValidationError("csv", f"cannot read {path!r}: {kind}")


def _open_file(handle: Any) -> CsvStream:
    """An open file: read in place when it is a seekable binary file, else copied."""
    try:
        seekable = bool(handle.seekable()) and isinstance(handle.read(0), bytes)
    except (AttributeError, OSError, ValueError):
        seekable = False
    if seekable:
        return CsvStream(handle, "the CSV file", start=handle.tell(), owned=False)

    def read(size: int) -> bytes:
        chunk = handle.read(size)
        return chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)

    return _spool(read, "the CSV file")


def _spool(read: Any, name: str) -> CsvStream:
    """Copy a stream into a private temporary file, up to :data:`MAX_SPOOL_BYTES`."""
    spool = tempfile.SpooledTemporaryFile(max_size=MAX_PART_BYTES)  # noqa: SIM115
    total = 0
    try:
        while chunk := read(READ_CHUNK):
            total += len(chunk)
            if total > MAX_SPOOL_BYTES:
                raise _too_large(name)
            spool.write(chunk)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return CsvStream(spool, name)


def _spool_rows(rows: Iterable[Any]) -> CsvStream:
    """The CSV of row mappings (checked and normalised as they are written), spooled."""
    spool = tempfile.SpooledTemporaryFile(max_size=MAX_PART_BYTES)  # noqa: SIM115
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\r\n")
    total = 0
    try:
        for record in csv_records(rows):
            writer.writerow(record)
            if text.tell() >= READ_CHUNK:
                total += spool.write(text.getvalue().encode("utf-8"))
                text.seek(0)
                text.truncate()
                if total > MAX_SPOOL_BYTES:
                    raise _too_large("the rows")
        spool.write(text.getvalue().encode("utf-8"))
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return CsvStream(spool, "the rows")


def _too_large(name: str) -> ValidationError:
    return ValidationError(
        "csv",
        f"{name} is more than {MAX_SPOOL_BYTES:,} bytes, the most read from a pipe or rows "
        "(each is checked whole before anything is sent); save it to a file and send that",
    )
