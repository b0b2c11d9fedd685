"""Results streamed out of a run instead of kept: for runs over millions of IDs in bounded
memory (``RetryOrchestrator.retry_messages(..., sink=...)``).

With a sink, the report keeps only its counters and the IDs in flight; duplicates are still
detected, by :class:`SeenIds`: 8 bytes per distinct ID (a 64-bit fingerprint in a sorted
array), about 8 MB per million IDs, instead of the ID strings and their results.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any, Protocol, TextIO, runtime_checkable

from ._files import open_private
from ._seen_ids import SeenIds
from .reports import MessageResult


@runtime_checkable
class ResultSink(Protocol):
    """Where results go, one call per distinct ID, in completion order."""

    def __call__(self, result: MessageResult) -> None: ...


class NdjsonSink:
    """Writes each result as one JSON line (the report's per-result shape) to ``path``, a
    file only its owner can read (mode 0600: results hold recipients and message text).
    Use it as a context manager, or call :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = path
        self._handle: TextIO = open_private(path)
        self.written = 0

    def __call__(self, result: MessageResult) -> None:
        self._handle.write(json.dumps(result.to_dict(), separators=(",", ":")) + "\n")
        self.written += 1

    def close(self) -> None:
        """Close the file (results written so far stay in it)."""
        self._handle.close()

    def __enter__(self) -> NdjsonSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def as_sink(target: ResultSink | Callable[[MessageResult], Any] | str | os.PathLike[str]) -> Any:
    """A callable sink for ``target``: a path becomes an :class:`NdjsonSink`."""
    if isinstance(target, (str, os.PathLike)):
        return NdjsonSink(target)
    return target


__all__ = ["NdjsonSink", "ResultSink", "SeenIds", "as_sink"]
