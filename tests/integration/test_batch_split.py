"""A batch send larger than one file may hold, against the simulator over loopback HTTP,
judged by its ground truth (every processed batch upload per file content, every send per
recipient and values).

The input is split into files the API accepts (20 rows in the test environment, 40 MB each);
each part is its own upload, decided on its own: a part whose answer is lost is read back,
never uploaded again, and a part the server refuses stops the rest without hiding the parts
already sent.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import postman_async as pa
from postman_async import _csv_split
from postman_async.testing import Campaign, Faults, PostmanSimulator

from ..checks import check_no_double_send
from ..helpers import client_for, sim_time

LOST = Faults(reset_after_rate=1.0, only_methods=("POST",))
TEST_CAMPAIGN = Campaign(id="campaign_test", api_keys=("key_test_abc",), test_environment=True)


def rows(n: int, start: int = 0, body: str = "Notice {i}") -> list[dict[str, str]]:
    return [
        {"recipient": f"6591{i:06d}", "language": "english", "body": body.format(i=i)}
        for i in range(start, start + n)
    ]


def check_no_double_upload(sim: PostmanSimulator) -> None:
    """No file (batch upload content) reached the server's handler twice."""
    doubles = {key[:60]: n for key, n in sim.posts.batch_uploads.items() if n > 1}
    assert not doubles, f"uploaded more than once: {doubles}"


async def env_sim(make_sim: Any, **options: Any) -> PostmanSimulator:
    sim: PostmanSimulator = await make_sim(campaigns=[TEST_CAMPAIGN], **options)
    return sim


def env_client(sim: PostmanSimulator, **options: Any) -> pa.PostmanClient:
    """A client of the test environment (20 rows per file), on the simulator's clock."""
    options = {"environment": "test", **sim_time(sim), **options}
    return client_for(sim, api_key="key_test_abc", campaign_id="campaign_test", **options)


@contextlib.contextmanager
def answer_lost_for(
    client: pa.PostmanClient, sim: PostmanSimulator, *posts: int
) -> Iterator[pa.PostmanClient]:
    """A view of ``client`` whose given POSTs (1-based, in the order sent) have their answers
    lost after the server processed them; the others are answered."""
    count = [0]

    async def before() -> None:
        count[0] += 1
        sim.faults = LOST if count[0] in posts else Faults()

    yield client.with_options(before_post=before)
    sim.faults = Faults()


def batch_rows(sim: PostmanSimulator, batch_id: str) -> list[str]:
    return sorted(sim.messages[m].recipient for m in sim.batches[batch_id].message_ids)


async def test_25_rows_in_the_test_environment_are_two_batches(make_sim: Any) -> None:
    sim = await env_sim(make_sim)
    async with env_client(sim) as client:
        assert client.max_batch_rows == 20
        result = await client.send_batch(rows(25))
        calls = client.calls
    assert [(p.first_row, p.rows) for p in result.parts] == [(1, 20), (21, 5)]
    assert result.batch_id == result.parts[0].batch_id and result.rows == 25
    assert set(result.batch_ids) == set(sim.batches) and len(sim.batches) == 2
    assert batch_rows(sim, result.batch_ids[0]) == [r["recipient"] for r in rows(20)]
    assert batch_rows(sim, result.batch_ids[1]) == [r["recipient"] for r in rows(5, 20)]
    assert sorted(b.original_file_name for b in sim.batches.values()) == [
        "messages-1-of-2.csv",
        "messages-2-of-2.csv",
    ]
    assert sum(sim.posts.batch_uploads.values()) == 2 and calls == 2
    check_no_double_upload(sim)


async def test_the_test_environment_refuses_a_file_of_21_rows(make_sim: Any) -> None:
    sim = await env_sim(make_sim)
    async with env_client(sim, max_batch_rows=21) as client:  # a client that does not split
        with pytest.raises(pa.ParameterInvalidError, match="at most 20 rows"):
            await client.send_batch(rows(21))
    assert sim.batches == {}


@pytest.mark.parametrize("lost", [1, 2])
async def test_a_part_whose_answer_is_lost_is_read_back_not_uploaded_again(
    make_sim: Any, lost: int
) -> None:
    sim = await env_sim(make_sim)
    async with env_client(sim) as client:
        with answer_lost_for(client, sim, lost) as view:
            result = await view.send_batch(rows(25))
        calls = client.calls
    confirmed = [p.confirmed_by_readback for p in result.parts]
    assert confirmed == [lost == 1, lost == 2] and result.confirmed_by_readback
    assert set(result.batch_ids) == set(sim.batches)  # both parts, each its own batch
    assert [p.rows for p in result.parts] == [20, 5]
    assert sum(sim.posts.batch_uploads.values()) == 2  # exactly 2 uploads on the server
    assert calls == 2 + 2  # the lost part: one search and one page of its batch
    check_no_double_upload(sim)
    check_no_double_send(sim)


async def test_identical_parts_are_never_taken_for_each_other(make_sim: Any) -> None:
    """Part 2 holds the same 20 rows as part 1; its answer is lost. The read-back finds two
    batches with those rows and takes the one this client does not know."""
    sim = await env_sim(make_sim)
    async with env_client(sim) as client:
        with answer_lost_for(client, sim, 2) as view:
            result = await view.send_batch(rows(20) + rows(20))
    first, second = result.parts
    assert first.batch_id != second.batch_id and second.confirmed_by_readback
    assert set(sim.batches) == {first.batch_id, second.batch_id}
    assert list(sim.posts.batch_uploads.values()) == [2]  # the same content, asked twice


async def test_a_part_refused_after_one_was_sent_carries_the_part_sent(make_sim: Any) -> None:
    sim = await env_sim(make_sim)
    too_long = rows(1, 22, body="x" * 1200)  # the server's body limit; the client's checks pass
    async with env_client(sim) as client:
        with pytest.raises(pa.PartialUploadError) as info:
            await client.send_batch(rows(22) + too_long + rows(10, 23))
    error = info.value
    (sent,) = error.sent
    assert (sent.first_row, sent.rows) == (1, 20) and set(sim.batches) == {sent.batch_id}
    assert (error.part, error.parts, error.first_row) == (2, 2, 21)
    assert isinstance(error.error, pa.ParameterInvalidError)
    text = str(error)
    assert sent.batch_id in text and "stopped at part 2 of 2" in text and "not created" in text
    assert sum(sim.posts.batch_uploads.values()) == 1


async def test_a_part_not_found_after_a_lost_answer_stops_the_upload(make_sim: Any) -> None:
    sim = await env_sim(make_sim)
    count = [0]

    async def before() -> None:  # the 2nd POST is dropped before the server processes it
        count[0] += 1
        sim.faults = (
            Faults(reset_before_rate=1.0, only_methods=("POST",)) if count[0] == 2 else Faults()
        )

    async with env_client(sim) as client:
        with pytest.raises(pa.PartialUploadError) as info:
            await client.with_options(before_post=before).send_batch(rows(45))
    error = info.value
    assert isinstance(error.error, pa.NotSentError) and error.part == 2 and error.parts == 3
    assert [p.rows for p in error.sent] == [20] and len(sim.batches) == 1
    assert "parts 3-3 were not sent" in str(error) and "not found" in str(error)
    assert count[0] == 2  # part 3 was never tried


async def test_the_first_part_failing_raises_as_it_is(make_sim: Any) -> None:
    sim = await env_sim(make_sim)
    async with env_client(sim) as client:
        with pytest.raises(pa.ParameterInvalidError):
            await client.send_batch(rows(1, body="x" * 1200) + rows(30, 1))
    assert sim.batches == {}


async def test_a_bad_row_anywhere_stops_everything_before_the_first_upload(make_sim: Any) -> None:
    sim = await env_sim(make_sim)
    csv_text = (
        "recipient,language,body\n"
        + "".join(f"6591{i:06d},english,hi\n" for i in range(60))
        + "123,english,hi\n"
    )
    async with env_client(sim) as client:
        with pytest.raises(pa.ValidationError, match="row 62"):
            await client.send_batch(csv_text)
        assert client.calls == 0


#: aiohttp warns (ResourceWarning) for a form field given as bytes over 1 MB; the session
#: layer passes the part's bytes as they are (pass an io.BytesIO there to silence it).
@pytest.mark.filterwarnings("ignore:Sending a large body directly:ResourceWarning")
async def test_a_41_mb_csv_is_sent_as_two_files(make_sim: Any, tmp_path: Path) -> None:
    sim = await make_sim()
    body = "Dear resident " + "this notice is long. " * 46  # about 980 characters
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        handle.write("recipient,language,body\r\n")
        count = 0
        while handle.tell() <= 41_000_000:
            handle.write(f"65{80000000 + count},english,{body}{count}\r\n")
            count += 1
    assert path.stat().st_size > 41_000_000 > _csv_split.MAX_PART_BYTES
    async with client_for(sim) as client:
        assert client.max_batch_rows is None  # no row limit against the simulator
        result = await client.send_batch(path, filename="big.csv")
    first, second = result.parts
    assert (first.first_row, first.rows + second.rows) == (1, count)
    assert second.first_row == first.rows + 1 and result.rows == count
    assert sum(sim.posts.batch_uploads.values()) == 2 and len(sim.batches) == 2
    assert sum(len(b.message_ids) for b in sim.batches.values()) == count
    check_no_double_upload(sim)
