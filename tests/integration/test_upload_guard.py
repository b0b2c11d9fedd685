"""The duplicate-upload guard (``send_batch(..., guard_window=...)``), against the simulator
over loopback HTTP, judged by its record of every processed batch upload.

A file whose batch was already created within the window is refused before it is sent,
found by the same read-back as a lost batch answer: one search by the file's first
recipient, and one page of each candidate batch (rows and recipients must agree). Off by
default in the library.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

import postman_async as pa
from postman_async.testing import PostmanSimulator

from ..helpers import client_for, sim_time
from .test_batch_split import check_no_double_upload, env_client, env_sim, rows

DAY = timedelta(hours=24)


def uploads(sim: PostmanSimulator) -> int:
    return sum(sim.posts.batch_uploads.values())


async def test_a_file_uploaded_twice_is_refused_naming_its_batch(make_sim: Any) -> None:
    sim = await make_sim()
    async with client_for(sim, **sim_time(sim)) as client:
        first = await client.send_batch(rows(3), guard_window=DAY)
        sim.advance(3600)  # an hour later, the same file again
        before = client.calls
        with pytest.raises(pa.DuplicateUploadError) as info:
            await client.send_batch(rows(3), guard_window=DAY)
        calls = client.calls - before
    error = info.value
    assert error.batch_id == first.batch_id and error.part == 1
    created = sim.batches[first.batch_id].created
    assert error.created_at is not None and abs(error.created_at.timestamp() - created) < 0.01
    text = str(error)
    assert first.batch_id in text and "already uploaded" in text and "--again" in text
    assert error.created_at.astimezone().strftime("%Y-%m-%d %H:%M:%S") in text
    assert calls == 2  # one search, one page of the batch found
    assert uploads(sim) == 1 and set(sim.batches) == {first.batch_id}
    check_no_double_upload(sim)


async def test_without_the_guard_the_same_file_is_sent_again(make_sim: Any) -> None:
    sim = await make_sim()
    async with client_for(sim, **sim_time(sim)) as client:
        await client.send_batch(rows(3))
        await client.send_batch(rows(3), guard_window=None)  # the library default: off
    assert list(sim.posts.batch_uploads.values()) == [2]


async def test_another_process_s_upload_is_found_too(make_sim: Any) -> None:
    sim = await make_sim()
    async with client_for(sim) as other:
        first = await other.send_batch(rows(3))
    async with client_for(sim) as client:
        with pytest.raises(pa.DuplicateUploadError) as info:
            await client.send_batch(rows(3), guard_window=600)  # seconds
    assert info.value.batch_id == first.batch_id and uploads(sim) == 1


@pytest.mark.parametrize(
    ("case", "later_rows", "wait"),
    [
        ("another file (other values)", rows(3, body="Reminder {i}"), 0.0),
        ("another file (one row more)", rows(4), 0.0),
        ("another file (one row less)", rows(2), 0.0),
        ("the same file, outside the window", rows(3), 25 * 3600.0),
    ],
)
async def test_only_the_same_file_within_the_window_is_refused(
    make_sim: Any, case: str, later_rows: list[dict[str, str]], wait: float
) -> None:
    sim = await make_sim()
    async with client_for(sim, **sim_time(sim)) as client:
        await client.send_batch(rows(3), guard_window=DAY)
        sim.advance(wait)
        second = await client.send_batch(later_rows, guard_window=DAY)
    assert second.batch_id in sim.batches and uploads(sim) == 2, case


async def test_a_split_file_sent_again_is_refused_at_its_first_part(make_sim: Any) -> None:
    sim = await env_sim(make_sim)
    async with env_client(sim) as client:
        first = await client.send_batch(rows(25), guard_window=DAY)
        with pytest.raises(pa.DuplicateUploadError) as info:
            await client.send_batch(rows(25), guard_window=DAY)
    assert info.value.batch_id == first.parts[0].batch_id and info.value.part == 1
    assert "part 1 of 2" in str(info.value) and uploads(sim) == 2  # the first run's two


async def test_a_part_equal_to_an_earlier_part_of_the_same_upload_is_sent(make_sim: Any) -> None:
    """The guard leaves out this upload's own parts: rows 21-40 repeat rows 1-20."""
    sim = await env_sim(make_sim)
    async with env_client(sim) as client:
        result = await client.send_batch(rows(20) + rows(20), guard_window=DAY)
    assert len(set(result.batch_ids)) == 2 and list(sim.posts.batch_uploads.values()) == [2]


async def test_a_guard_window_must_be_positive(make_sim: Any) -> None:
    sim = await make_sim()
    async with client_for(sim) as client:
        for bad in (0, -1, float("nan"), "24h", True):
            with pytest.raises(pa.ValidationError, match="guard_window"):
                await client.send_batch(rows(1), guard_window=bad)  # type: ignore[arg-type]
        assert client.calls == 0
