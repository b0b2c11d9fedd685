"""Splitting a batch CSV into files the API accepts, while reading it: parts within the row
and byte limits, whole records copied byte for byte, every record checked, and never more
than one part of the input read ahead. Sources that cannot be read twice are spooled. No
network."""

from __future__ import annotations

import csv
import io
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import postman_async as pa
from postman_async import _csv_input, _csv_split
from postman_async._csv_split import CsvPart, count_parts, split_csv
from postman_async.validation import validate_csv

HEADER = b"recipient,language,body\r\n"


def rows(n: int, *, body: str = "hello {n}") -> bytes:
    return b"".join(f"6591{i:06d},english,{body.format(n=i)}\r\n".encode() for i in range(n))


def parts(data: bytes, **limits: Any) -> list[CsvPart]:
    limits.setdefault("max_rows", None)
    return list(split_csv(io.BytesIO(data), **limits))


def records(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def test_an_input_that_fits_comes_out_as_itself() -> None:
    data = HEADER + b'6591234567,english,"Hi, ""Tan""\r\nBye"\r\n6598765432,ENGLISH,x\n'
    (only,) = parts(data)
    assert only == CsvPart(data, 1, 2)


def test_rows_are_split_at_the_row_limit_each_part_with_the_header() -> None:
    found = parts(HEADER + rows(45), max_rows=20)
    assert [(p.first_row, p.rows, p.last_row) for p in found] == [
        (1, 20, 20),
        (21, 20, 40),
        (41, 5, 45),
    ]
    assert all(p.data.startswith(HEADER) and validate_csv(p.data) for p in found)
    assert b"".join(p.data.removeprefix(HEADER) for p in found) == rows(45)


def test_bytes_are_split_at_the_byte_limit_and_a_quoted_newline_stays_whole() -> None:
    long = b'"' + b"x" * 300 + b"\r\n" + b"y" * 300 + b'"'
    data = HEADER + b"".join(b"6591%06d,english,%s\r\n" % (i, long) for i in range(10))
    found = parts(data, max_bytes=2000)
    assert all(len(p.data) <= 2000 for p in found) and len(found) == 4
    assert sum(p.rows for p in found) == 10
    assert [r for p in found for r in records(p.data)[1:]] == records(data)[1:]


def test_blank_lines_and_a_byte_order_mark_are_left_out_and_rows_numbered() -> None:
    data = b"\xef\xbb\xbf" + HEADER + b"\r\n" + rows(2) + b",,\r\n" + rows(1)
    found = parts(data, max_rows=2)
    assert [p.data for p in found] == [HEADER + rows(2), HEADER + rows(1)]
    assert [p.first_row for p in found] == [1, 3]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "is empty"),
        (b"phone,language\n6591234567,english\n", "header must contain"),
        (HEADER, "no message rows"),
        (HEADER + rows(30) + b"123,english,x\r\n", "row 32"),  # in the second part of 20
        (HEADER + rows(2) + b"6591234568,english,\xe9\r\n", r"not UTF-8 text \(line 4\)"),
        (HEADER + b"6591234567,english," + b"x" * (2 << 20), "line 2 is longer than"),
        (HEADER + b'6591234567,english,"never closed\r\n' + rows(9000), "cannot be parsed"),
    ],
)
def test_bad_input_is_refused_naming_where(data: bytes, message: str) -> None:
    with pytest.raises(pa.ValidationError, match=message):
        count_parts(io.BytesIO(data), max_rows=20, max_bytes=_csv_split.MAX_PART_BYTES)


def test_a_row_that_cannot_fit_in_a_file_is_refused() -> None:
    with pytest.raises(pa.ValidationError, match="row 3 does not fit in one file of 500 bytes"):
        count_parts(
            io.BytesIO(HEADER + rows(1) + rows(1, body="x" * 600)), max_rows=None, max_bytes=500
        )


class Counting(io.RawIOBase):
    """An endless CSV produced as it is read, counting the bytes handed out."""

    def __init__(self) -> None:
        self.given = 0
        self._pending = HEADER
        self._row = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while len(self._pending) < len(buffer):
            self._pending += f"6591{self._row % 10**6:06d},english,{'z' * 100}\r\n".encode()
            self._row += 1
        size = len(buffer)
        buffer[:size], self._pending = self._pending[:size], self._pending[size:]
        self.given += size
        return size


def test_a_large_input_is_read_one_part_at_a_time() -> None:
    source = Counting()
    split = split_csv(source, max_rows=None, max_bytes=1_000_000)  # type: ignore[arg-type]
    first = next(split)
    assert len(first.data) <= 1_000_000
    read_ahead = source.given - len(first.data)
    assert read_ahead <= _csv_split.READ_CHUNK + 200  # the chunk holding the next row
    for _ in range(3):
        next(split)
    assert source.given <= 4 * 1_000_000 + _csv_split.READ_CHUNK + 200


@settings(max_examples=60, deadline=None)
@given(
    bodies=st.lists(
        st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
            str.strip
        ),
        min_size=1,
        max_size=40,
    ),
    max_rows=st.one_of(st.none(), st.integers(1, 7)),
    max_bytes=st.integers(400, 2000),
)
def test_parts_hold_every_row_once_within_the_limits(
    bodies: list[str], max_rows: int | None, max_bytes: int
) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(["recipient", "language", "body"])
    writer.writerows([f"6591{i:06d}", "english", b] for i, b in enumerate(bodies))
    data = buf.getvalue().encode()
    found = parts(data, max_rows=max_rows, max_bytes=max_bytes)
    assert [r for p in found for r in records(p.data)[1:]] == records(data)[1:]
    for part in found:
        assert len(part.data) <= max_bytes and validate_csv(part.data)
        assert max_rows is None or part.rows <= max_rows
    assert [p.first_row for p in found] == [
        1,
        *[sum(p.rows for p in found[:i]) + 1 for i in range(1, len(found))],
    ]


# -- sources: read in place, or spooled when they cannot be read twice ---------------------


async def read_all(source: Any) -> bytes:
    stream = await _csv_input.open_csv(source)
    try:
        first = stream.handle.read()
        stream.rewind()
        assert stream.handle.read() == first  # it can be read twice
        return bytes(first)
    finally:
        stream.close()


async def test_every_source_can_be_read_twice(tmp_path: Path) -> None:
    data = HEADER + rows(3)
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    assert await read_all(data) == data
    assert await read_all(data.decode()) == data
    assert await read_all(path) == data
    with path.open("rb") as handle:
        handle.read(len(HEADER))  # a seekable file is read from where it stands
        assert await read_all(handle) == rows(3)
    with path.open("r", encoding="utf-8", newline="") as text:
        assert await read_all(text) == data
    rows_in = [{"recipient": "+65 9123 4567", "language": "ENGLISH", "body": 'a, "b"'}]
    assert (
        await read_all(iter(rows_in))
        == b'recipient,language,body\r\n6591234567,english,"a, ""b"""\r\n'
    )


async def test_a_pipe_is_spooled_and_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fifo = tmp_path / "in.fifo"
    os.mkfifo(fifo)
    data = HEADER + rows(2000)

    def write() -> None:
        with open(fifo, "wb") as handle:
            handle.write(data)

    writer = threading.Thread(target=write)
    writer.start()
    assert await read_all(fifo) == data
    writer.join()
    monkeypatch.setattr(_csv_input, "MAX_SPOOL_BYTES", 1000)
    read, write_end = os.pipe()
    os.write(write_end, data[:4000])
    os.close(write_end)
    with (
        open(read, "rb", buffering=0) as unseekable,  # noqa: ASYNC230
        pytest.raises(pa.ValidationError, match="more than 1,000 bytes"),
    ):
        await _csv_input.open_csv(unseekable)


async def test_a_directory_or_a_device_is_refused_before_it_is_opened(tmp_path: Path) -> None:
    with pytest.raises(pa.ValidationError, match="a directory"):
        await _csv_input.open_csv(tmp_path)
    with pytest.raises(pa.ValidationError, match="not a regular file"):
        await _csv_input.open_csv(Path("/dev/zero"))
    with pytest.raises(pa.ValidationError, match="cannot read"):
        await _csv_input.open_csv(tmp_path / "missing.csv")


# -- how many rows a file may hold ---------------------------------------------------------

LOCAL = "http://127.0.0.1:9/api/v2"


@pytest.mark.parametrize(
    ("key", "base_url", "environment", "rows"),
    [
        ("key_test_x", None, None, 20),  # the test environment, from the key
        ("key_live_x", None, None, None),  # production: no row limit documented
        ("key_test_x", LOCAL, None, None),  # a local double (the simulator): its own limits
        ("key_test_x", "https://postman-proxy.example/api/v2", None, 20),
        ("key_live_x", LOCAL, "test", 20),  # named: the simulator as the test environment
        ("key_test_x", None, "production", None),
        ("key_test_x", None, "loadtest", None),
    ],
)
def test_a_file_holds_20_rows_in_the_test_environment(
    key: str, base_url: str | None, environment: str | None, rows: int | None
) -> None:
    client = pa.PostmanClient(key, "campaign_1", base_url=base_url, environment=environment)
    assert client.max_batch_rows == rows
    assert pa.PostmanClient(key, "c", base_url=base_url, max_batch_rows=7).max_batch_rows == 7


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "20"])
def test_max_batch_rows_must_be_a_whole_number(bad: Any) -> None:
    with pytest.raises(pa.ValidationError, match="max_batch_rows"):
        pa.PostmanClient("key_live_x", "campaign_1", max_batch_rows=bad)
