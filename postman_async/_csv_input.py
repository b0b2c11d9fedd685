"""Where a batch's CSV comes from: rows, bytes or text, a path, or an open file."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from typing import IO, Any

from .errors import ValidationError
from .validation import rows_to_csv, validate_csv

CsvSource = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes] | IO[str]


async def read_csv(source: Any) -> bytes:
    """The CSV bytes of a batch, from rows, content, a path or an open file, checked as the
    API would. Raises :class:`ValidationError` for a CSV the API would refuse or cannot be read."""
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
        content = source.read()
        return validate_csv(content.encode("utf-8") if isinstance(content, str) else content)
    if isinstance(source, Iterable):
        return rows_to_csv(source)
    raise ValidationError("rows_or_csv", f"cannot make a CSV from {type(source).__name__}")


def _read_file(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()
