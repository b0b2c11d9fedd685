"""Bounded-memory duplicate detection and the NDJSON sink (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from postman_async import _seen_ids, sinks
from postman_async.reports import MessageResult, Outcome, RetryReport


def test_seen_ids_finds_duplicates_across_merges(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_seen_ids, "MERGE_EVERY", 16)
    seen = sinks.SeenIds()
    ids = [f"message_{n}" for n in range(1000)]
    assert all(seen.add(i) for i in ids)
    assert len(seen) == 1000 and len(seen._sorted) >= 992  # merged into the sorted array
    assert not any(seen.add(i) for i in ids[::7])  # old and recent ones alike
    assert list(seen._sorted) == sorted(seen._sorted)


def test_a_report_with_a_sink_keeps_counters_only(tmp_path: Path) -> None:
    path = tmp_path / "results.ndjson"
    with sinks.NdjsonSink(path) as sink:
        report = RetryReport(sink=sink)
        assert report.claim("a") and report.claim("b") and not report.claim("a")
        report.record(MessageResult("a", Outcome.RETRIED, "status created"))
        assert report.pending == ["b"]  # in flight: the only IDs kept
        report.record(MessageResult("b", Outcome.NOT_FOUND, "no such message"))
    assert report.pending == [] and list(report) == [] and len(report) == 2
    assert report.duplicates == 1 and report.counts[Outcome.RETRIED] == 1
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["messageId"], r["outcome"]) for r in lines] == [
        ("a", "retried"),
        ("b", "skipped_not_found"),
    ]
