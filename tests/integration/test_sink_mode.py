"""retry_messages with a result sink: the same results as a kept report, streamed."""

from __future__ import annotations

import json
from pathlib import Path

import postman_async as pa
from postman_async.testing import PostmanSimulator

from ..helpers import client_for, fast_orchestrator

FAIL = (pa.MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")


async def test_a_sink_gets_one_result_per_distinct_id(make_sim, tmp_path: Path) -> None:
    sim: PostmanSimulator = await make_sim()
    failed = [sim.create_message("6591234567", outcome=FAIL).id for _ in range(30)]
    ids = [*failed, *failed[:5], "message_missing", "bad id"]
    path = tmp_path / "out.ndjson"
    async with client_for(sim) as client:
        report = await fast_orchestrator(client).retry_messages(ids, sink=str(path))
    results = {r["messageId"]: r for r in map(json.loads, path.read_text().splitlines())}
    assert set(results) == {*failed, "message_missing", "bad id"}
    assert all(results[i]["outcome"] == "retried" for i in failed)
    assert results["bad id"]["outcome"] == "error"
    assert report.duplicates == 5 and len(report) == 32 and list(report) == []
    assert sim.posts.retries == {i: 1 for i in failed}


async def test_a_callable_sink(make_sim) -> None:
    sim: PostmanSimulator = await make_sim()
    failed = [sim.create_message("6591234567", outcome=FAIL).id for _ in range(5)]
    seen: list[pa.MessageResult] = []
    async with client_for(sim) as client:
        await fast_orchestrator(client).retry_messages(failed, sink=seen.append)
    assert sorted(r.message_id for r in seen) == sorted(failed)
