"""Results streamed out of a run instead of kept: for runs over millions of IDs in bounded
memory (``RetryOrchestrator.retry_messages(..., sink=...)``).

With a sink, the report keeps only its counters and the IDs in flight; duplicates are still
detected, by :class:`SeenIds`: 8 bytes per distinct ID (a 64-bit fingerprint in a sorted
array), about 8 MB per million IDs, instead of the ID strings and their results.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import json
import os
from array import array
from collections.abc import Callable
from typing import Any, Protocol, TextIO, runtime_checkable

from ._files import open_private
from .reports import MessageResult

#: Fingerprints held in a set before they are merged into the sorted array.
MERGE_EVERY = 65_536


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


class SeenIds:
    """A set of IDs in bounded memory: 64-bit BLAKE2b fingerprints, the bulk in a sorted
    ``array('Q')`` (8 bytes each) and the newest in a small set.

    Exact for every practical purpose but not in theory: two distinct IDs share a
    fingerprint with probability about n**2 / 2**65 over n IDs (3 in 100 million for a
    million IDs); the later one would then be counted as a duplicate.
    """

    def __init__(self) -> None:
        self._sorted = array("Q")
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    def add(self, message_id: str) -> bool:
        """Add an ID; False if it was already there."""
        fingerprint = _fingerprint(message_id)
        if fingerprint in self._recent or self._in_sorted(fingerprint):
            return False
        self._recent.add(fingerprint)
        if len(self._recent) >= MERGE_EVERY:
            self._merge()
        return True

    def _in_sorted(self, fingerprint: int) -> bool:
        index = bisect.bisect_left(self._sorted, fingerprint)
        return index < len(self._sorted) and self._sorted[index] == fingerprint

    def _merge(self) -> None:
        merged = array("Q", heapq.merge(self._sorted, sorted(self._recent)))
        self._sorted = merged
        self._recent = set()


def _fingerprint(message_id: str) -> int:
    digest = hashlib.blake2b(message_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def as_sink(target: ResultSink | Callable[[MessageResult], Any] | str | os.PathLike[str]) -> Any:
    """A callable sink for ``target``: a path becomes an :class:`NdjsonSink`."""
    if isinstance(target, (str, os.PathLike)):
        return NdjsonSink(target)
    return target
