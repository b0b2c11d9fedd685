"""Where a batch's CSV comes from: rows, bytes or text, a path, or an open file."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterable
from typing import IO, Any

from .errors import ValidationError
from .validation import MAX_CSV_BYTES, rows_to_csv, validate_csv

CsvSource = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes] | IO[str]


async def read_csv(source: Any) -> bytes:
    """The CSV bytes of a batch, from rows, content, a path or an open file, checked as the
    API would. Raises :class:`ValidationError` for a CSV the API would refuse or cannot be read.

    A path must name a regular file (or a pipe) of at most the API's 40 MB, which is checked
    before it is read; a directory or a device (``/dev/zero``) is refused. Nothing is read
    past the limit, from a path, a pipe or an open file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return validate_csv(bytes(source))
    if isinstance(source, str):
        return validate_csv(source.encode("utf-8"))
    if isinstance(source, os.PathLike):
        try:
            data = await asyncio.to_thread(_read_file, os.fspath(source))
        except OSError as exc:
            raise ValidationError("csv", f"cannot read {os.fspath(source)!r}: {exc}") from exc
        return validate_csv(data)
    if hasattr(source, "read"):
        content = source.read(MAX_CSV_BYTES + 1)
        return validate_csv(content.encode("utf-8") if isinstance(content, str) else content)
    if isinstance(source, Iterable):
        return rows_to_csv(source)
    raise ValidationError("rows_or_csv", f"cannot make a CSV from {type(source).__name__}")


def _read_file(path: str) -> bytes:
    _check_file(path, os.stat(path))
    with open(path, "rb") as handle:
        _check_file(path, os.fstat(handle.fileno()))  # the file opened is the one checked
        data = handle.read(MAX_CSV_BYTES + 1)
    if len(data) > MAX_CSV_BYTES:
        raise _too_large(path)
    return data


def _check_file(path: str, info: os.stat_result) -> None:
    """A regular file within the API's size limit, or a pipe; nothing else."""
    if stat.S_ISREG(info.st_mode):
        if info.st_size > MAX_CSV_BYTES:
            raise _too_large(path, info.st_size)
        return
    if stat.S_ISFIFO(info.st_mode):
        return
    kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device?)"
    raise ValidationError("csv", f"cannot read {path!r}: {kind}")


def _too_large(path: str, size: int | None = None) -> ValidationError:
    what = f"{size:,} bytes" if size is not None else f"more than {MAX_CSV_BYTES:,} bytes"
    return ValidationError(
        "csv", f"{path!r} is {what}, larger than the API's 40 MB limit per CSV file"
    )
