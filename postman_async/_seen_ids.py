"""Bounded duplicate detection for a streamed run: 64-bit fingerprints of the IDs seen, in a
sorted array (8 bytes per distinct ID). Its own module, so that reports and sinks do not
import each other."""

from __future__ import annotations

import bisect
import hashlib
import heapq
from array import array

#: Fingerprints held in a set before they are merged into the sorted array.
MERGE_EVERY = 65_536


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
