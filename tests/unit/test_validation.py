from __future__ import annotations

import io

import pytest

from postman_async import ValidationError
from postman_async._csv_split import MAX_PART_BYTES, count_parts
from postman_async.validation import (
    normalize_recipient,
    rows_to_csv,
    validate_api_key,
    validate_base_url,
    validate_csv,
    validate_cursor,
    validate_id,
    validate_language,
    validate_page_size,
    validate_search,
    validate_values,
)


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("6591234567", "6591234567"),
        ("+65 9123 4567", "6591234567"),
        ("+65-9123-4567", "6591234567"),
        (" 6591234567 ", "6591234567"),
        ("6591234567\n", "6591234567"),
        ("+44 (7911) 123456", "447911123456"),
        ("6511111111", "6511111111"),
        ("6522222222", "6522222222"),
    ],
)
def test_recipient_normalised(raw: str, normalised: str) -> None:
    assert normalize_recipient(raw) == normalised


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "91234567",
        "659123456",
        "65912345678",
        "0123456789",
        "65 9123\r\n4567",
        "++6591234567",
        "1234567",
        "1" * 16,
        6591234567,
        None,
    ],
)
def test_recipient_rejected(raw: object) -> None:
    with pytest.raises(ValidationError) as info:
        normalize_recipient(raw)
    assert info.value.field == "recipient"


def test_language_case_insensitive_and_typed() -> None:
    assert validate_language("ENGLISH") == "english"
    assert validate_language(" Tamil ") == "tamil"
    for bad in ("klingon", "", None, 3):
        with pytest.raises(ValidationError, match="language"):
            validate_language(bad)


def test_values_rules() -> None:
    assert validate_values({"body": "Hi\nthere"}) == {"body": "Hi\nthere"}
    assert validate_values({}) == {}
    for bad in (
        ["body"],
        "body",
        {"body": ""},
        {"body": "   "},
        {"body": 5},
        {"": "x"},
        {"recipient": "x"},
        {"language": "x"},
        {"a\nb": "x"},
        {1: "x"},
    ):
        with pytest.raises(ValidationError, match="values"):
            validate_values(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "a/b",
        "a b",
        " x",
        "x\r\nInjected: 1",
        "x\x00",
        "../etc",
        "%2F",
        "a?b",
        "a#b",
        "x" * 201,
        None,
        5,
    ],
)
def test_ids_rejected(bad: object) -> None:
    with pytest.raises(ValidationError):
        validate_id("message_id", bad)


def test_ids_accepted() -> None:
    for good in ("message_0b1c2d3e-aaaa-4bbb-8ccc-0123456789ab", "685", "batch_x.y:z"):
        assert validate_id("message_id", good) == good


def test_page_size_search_cursor() -> None:
    assert validate_page_size(1) == 1 and validate_page_size(1000) == 1000
    for bad in (0, 1001, -1, True, "10", 1.5):
        with pytest.raises(ValidationError):
            validate_page_size(bad)
    assert validate_search(" 9123 ") == "9123"
    for bad in ("", "  ", "a\nb", 5):
        with pytest.raises(ValidationError):
            validate_search(bad)
    assert validate_cursor("WyIyMDI0Il0=") == "WyIyMDI0Il0="
    for bad in ("", "a b", "x\ny", 7):
        with pytest.raises(ValidationError):
            validate_cursor(bad)


def test_api_key_never_echoed() -> None:
    secret = "key_live_secret value"
    with pytest.raises(ValidationError) as info:
        validate_api_key(secret)
    assert "secret" not in str(info.value)
    with pytest.raises(ValidationError):
        validate_api_key("key_live_abc\r\nX-Evil: 1")
    with pytest.raises(ValidationError):
        validate_api_key("")


@pytest.mark.parametrize(
    "url",
    [
        "http://postman.gov.sg/api/v2",
        "ftp://x/y",
        "postman.gov.sg",
        "https://u:p@h.sg/api",
        "https://h.sg/api?x=1",
        "http://10.0.0.1/api",
        "https://h.sg/\r\n",
        5,
    ],
)
def test_base_url_rejected(url: object) -> None:
    with pytest.raises(ValidationError, match="base_url"):
        validate_base_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "https://postman.gov.sg/api/v2",
        "http://127.0.0.1:8080/api/v2",
        "http://localhost/api",
        "http://[::1]:9000/api/v2",
        "http://127.8.9.1/api/v2/",
    ],
)
def test_base_url_accepted(url: str) -> None:
    assert str(validate_base_url(url)).startswith(url.split(":")[0])


def test_rows_to_csv_survives_commas_quotes_newlines() -> None:
    import csv
    import io

    data = rows_to_csv(
        [
            {"recipient": "+65 9123 4567", "language": "ENGLISH", "body": 'a, "b"\nc'},
            {"recipient": "6598765432", "language": "malay", "body": "plain"},
        ]
    )
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    assert rows == [
        ["recipient", "language", "body"],
        ["6591234567", "english", 'a, "b"\nc'],
        ["6598765432", "malay", "plain"],
    ]


def test_rows_to_csv_rejects_bad_rows() -> None:
    with pytest.raises(ValidationError, match="row 2"):
        rows_to_csv(
            [
                {"recipient": "6591234567", "language": "english", "body": "x"},
                {"recipient": "123", "language": "english", "body": "x"},
            ]
        )
    with pytest.raises(ValidationError, match="variables"):
        rows_to_csv(
            [
                {"recipient": "6591234567", "language": "english", "body": "x"},
                {"recipient": "6591234568", "language": "english", "other": "x"},
            ]
        )
    with pytest.raises(ValidationError, match="at least one"):
        rows_to_csv([])
    with pytest.raises(ValidationError, match="mapping"):
        rows_to_csv(["6591234567,english,x"])


def test_validate_csv() -> None:
    good = b"recipient,language,body\r\n6591234567,ENGLISH,hello\r\n"
    assert validate_csv(good) == good
    for bad, match in [
        (b"", "empty"),
        (b"phone,language\n6591234567,english\n", "header"),
        (b"recipient,language,body\n", "no message rows"),
        (b"recipient,language,body\n6591234567,english\n", "cells"),
        (b"recipient,language,body\n123,english,x\n", "row 2"),
        (b"recipient,language,body\n6591234567,english,\n", "row 2"),
        (b"\xff\xfe", "UTF-8"),
    ]:
        with pytest.raises(ValidationError, match=match):
            validate_csv(bad)


def test_validate_csv_names_every_bad_row_in_one_run() -> None:
    rows = [b"6591234567,english,hi", b"12,english,hi", b"6591234568,klingon,hi", b"abc,english,x"]
    data = b"recipient,language,body\n" + b"\n".join(rows) + b"\n"
    with pytest.raises(ValidationError) as caught:
        validate_csv(data)
    reason = caught.value.reason
    assert reason.startswith("3 bad rows: row 3:") and "row 4:" in reason and "row 5:" in reason
    many = b"recipient,language,body\n" + b"12,english,x\n" * 25
    with pytest.raises(ValidationError, match=r"25 bad rows: .*row 21: .*; and 5 more$"):
        validate_csv(many)


def test_the_splitters_check_names_every_bad_row_before_any_part() -> None:
    data = b"recipient,language,body\n6591234567,english,hi\n12,english,x\n1,tamil,y\n"
    with pytest.raises(ValidationError, match=r"2 bad rows: row 3: .*; row 4: "):
        count_parts(io.BytesIO(data), max_rows=None, max_bytes=MAX_PART_BYTES)


CYRILLIC_O = "\u043e"


@pytest.mark.parametrize(
    ("url", "punycode"),
    [
        (f"https://p{CYRILLIC_O}stman.gov.sg/api/v2", "xn--pstman-wqf.gov.sg"),
        (f"https://test.p{CYRILLIC_O}stman.gov.sg/api/v2", "test.xn--pstman-wqf.gov.sg"),
        ("https://xn--pstman-wqf.gov.sg/api/v2", "xn--pstman-wqf.gov.sg"),  # already punycode
        ("https://POSTMAN.XN--PSTMAN-WQF.gov.sg/api/v2", "postman.xn--pstman-wqf.gov.sg"),
    ],
)
def test_look_alike_hosts_refused_showing_their_punycode(url: str, punycode: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_base_url(url)
    assert info.value.field == "base_url"
    assert punycode in str(info.value) and "internationalised" in str(info.value)
    assert CYRILLIC_O not in str(info.value)


def test_look_alike_hosts_accepted_only_when_asked() -> None:
    url = validate_base_url(f"https://p{CYRILLIC_O}stman.gov.sg/api/v2", allow_idn=True)
    assert url.raw_host == "xn--pstman-wqf.gov.sg"
    assert (
        str(validate_base_url("https://postman.gov.sg/api/v2")) == "https://postman.gov.sg/api/v2"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://user:hunter2SECRET@h.sg/api/v2",
        "https://:hunter2SECRET@h.sg/api/v2",
        "ftp://user:hunter2SECRET@h.sg/api/v2",
        "https://user:hunter2SECRET@[::1/api",
        "http://user:hunter2SECRET@10.0.0.1/api",
    ],
)
def test_base_url_credentials_are_refused_never_echoed(url: str) -> None:
    with pytest.raises(ValidationError, match="base_url") as info:
        validate_base_url(url)
    assert "hunter2SECRET" not in str(info.value)


def test_csv_not_utf8_names_its_line() -> None:
    data = b"recipient,language,body\n6591234567,english,ok\n" + b"6591234568,english,\xff\n"
    with pytest.raises(ValidationError, match=r"not UTF-8 text \(line 3\)"):
        validate_csv(data)
    with pytest.raises(ValidationError, match=r"line 3\)"):
        validate_csv(b"\xef\xbb\xbf" + data)  # after a byte order mark
