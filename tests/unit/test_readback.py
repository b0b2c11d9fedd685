"""The pure read-back decisions (postman_async.readback), one table row per case: what was
sent, what was read back, and the verdict. No network, no clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import postman_async as pa
from postman_async import readback as rb

RECIPIENT = "6591234567"
VALUES = {"body": "Your OTP is 123456"}
SENT = rb.SentMessage(RECIPIENT, "english", VALUES)
#: the read was answered at 10:00:03 (server clock), 3 s after the POST was sent
DATE = "Wed, 02 Dec 2026 10:00:03 GMT"
POST = datetime(2026, 12, 2, 10, 0, 0, tzinfo=timezone.utc)


def message(
    id: str = "message_new", *, at: float = 0.5, batch: str | None = None, **fields: Any
) -> pa.Message:
    """A listed message created ``at`` seconds after the POST (server clock)."""
    data: dict[str, Any] = {
        "recipient": RECIPIENT,
        "language": "english",
        "values": dict(VALUES),
        "created_at": POST + timedelta(seconds=at),
        "batch_id": batch,
    }
    data.update(fields)
    return pa.Message(id=id, **data)


SEND_CASES: list[tuple[str, list[pa.Message], frozenset[str], str | None, str]] = [
    # (case, listed newest first, known IDs, Date header, verdict: applied id / not / ambiguous)
    ("created (exact match)", [message()], frozenset(), DATE, "message_new"),
    ("values differ", [message(values={"body": "Your OTP is 999999"})], frozenset(), DATE, "not"),
    ("language differs", [message(language="malay")], frozenset(), DATE, "not"),
    ("recipient only contains it", [message(recipient="16591234567")], frozenset(), DATE, "not"),
    ("a batch message is not a send", [message(batch="batch_1")], frozenset(), DATE, "not"),
    ("created before the POST", [message(at=-30.0)], frozenset(), DATE, "not"),
    ("created within the skew allowance", [message(at=-1.5)], frozenset(), DATE, "message_new"),
    ("just outside the skew allowance", [message(at=-2.5)], frozenset(), DATE, "not"),
    ("already known to this client", [message()], frozenset({"message_new"}), DATE, "not"),
    (
        "the unknown one beside a known one",
        [message("message_b", at=0.8), message("message_a", at=0.2)],
        frozenset({"message_b"}),
        DATE,
        "message_a",
    ),
    (
        "two candidates",
        [message("message_b", at=0.8), message("message_a", at=0.2)],
        frozenset(),
        DATE,
        "ambiguous",
    ),
    ("none", [], frozenset(), DATE, "not"),
    (
        "only other messages",
        [message(at=-600.0), message("m2", values={"body": "x"})],
        frozenset(),
        DATE,
        "not",
    ),
    ("no Date header: cannot be placed in time", [message()], frozenset(), None, "ambiguous"),
    (
        "no createdAt: cannot be placed in time",
        [message(created_at=None)],
        frozenset(),
        DATE,
        "ambiguous",
    ),
    (
        "no values listed: cannot be ruled out",
        [message(values=None)],
        frozenset(),
        DATE,
        "ambiguous",
    ),
    (
        "no language listed: cannot be ruled out",
        [message(language=None)],
        frozenset(),
        DATE,
        "ambiguous",
    ),
    ("listed twice (pages overlap)", [message(), message()], frozenset(), DATE, "message_new"),
]


@pytest.mark.parametrize(
    ("case", "listed", "known", "date", "expected"), SEND_CASES, ids=[c[0] for c in SEND_CASES]
)
def test_send_verdict(
    case: str, listed: list[pa.Message], known: frozenset[str], date: str | None, expected: str
) -> None:
    verdict = rb.send_verdict(
        SENT, listed, not_before=rb.earliest_post_time(date, 3.0), known=known
    )
    if expected == "not":
        assert verdict == rb.NOT_APPLIED
    elif expected == "ambiguous":
        assert isinstance(verdict, rb.Ambiguous) and verdict.candidates
    else:
        assert isinstance(verdict, rb.Applied) and verdict.object.id == expected


def test_earliest_post_time() -> None:
    # Date 10:00:03 (truncated: the server's time was at least that), answered 3 s after the
    # POST was sent: the POST reached the server at 10:00:00 at the earliest, less 2 s skew.
    assert rb.earliest_post_time(DATE, 3.0) == POST - timedelta(seconds=2)
    assert rb.earliest_post_time(DATE, 3.0, skew=0) == POST
    assert rb.earliest_post_time(DATE, -1.0, skew=0) == POST + timedelta(seconds=3)
    assert rb.earliest_post_time(None, 3.0) is None
    assert rb.earliest_post_time("not a date", 3.0) is None


# -- batches ------------------------------------------------------------------------------

ROWS = [
    ("6591234567", "english", {"body": "Hi, Tan"}),
    ("6598765432", "english", {"body": "Hi, Lim"}),
    ("6591234567", "english", {"body": "Bye, Tan"}),
]
BATCH = rb.SentBatch(tuple(rb.SentRow(r, lang, v) for r, lang, v in ROWS))


def page(recipients: list[str], *, more: bool = False) -> pa.Page:
    data = tuple(pa.Message(id=f"message_{i}", recipient=r) for i, r in enumerate(recipients))
    info = pa.PageInfo(has_next_page=more, end_cursor="WyJhIiwiYiJd" if more else None)
    return pa.Page(data=data, page_data=info)


def probe(batch_id: str = "batch_1", *, at: float = 0.5, total: int | None = 3, **kw: Any):
    batches = (pa.Batch(id=batch_id, total_messages=total),) if total is not None else None
    return message(
        f"message_of_{batch_id}",
        at=at,
        batch=batch_id,
        batches=batches,
        values={"body": "Hi, Tan"},
        **kw,
    )


BATCH_CASES: list[tuple[str, list[pa.Message], dict[str, pa.Page], str | None, str]] = [
    # (case, probe recipient's messages, one page per batch, Date header, verdict)
    (
        "batch found and confirmed",
        [probe()],
        {"batch_1": page(["6591234567", "6591234567", "6598765432"])},
        DATE,
        "batch_1",
    ),
    (
        "batch with wrong row count",
        [probe(total=None)],
        {"batch_1": page(["6591234567", "6598765432"])},
        DATE,
        "not",
    ),
    (
        "batch whose totalMessages differs",
        [probe(total=4)],
        {"batch_1": page(["6591234567", "6591234567", "6598765432"])},
        DATE,
        "not",
    ),
    (
        "batch recipients differ",
        [probe()],
        {"batch_1": page(["6591234567", "6591234567", "6590000000"])},
        DATE,
        "not",
    ),
    (
        "batch created before the upload",
        [probe(at=-60.0)],
        {"batch_1": page(["6591234567", "6591234567", "6598765432"])},
        DATE,
        "not",
    ),
    (
        "batch already known to this client",
        [probe("batch_known")],
        {"batch_known": page(["6591234567", "6591234567", "6598765432"])},
        DATE,
        "not",
    ),
    (
        "probe's language differs",
        [probe(language="malay")],
        {"batch_1": page(["6591234567", "6591234567", "6598765432"])},
        DATE,
        "not",
    ),
    (
        "a single send is not a batch",
        [message(values={"body": "Hi, Tan"})],
        {},
        DATE,
        "not",
    ),
    (
        "two batches agree",
        [probe("batch_2", at=0.9), probe("batch_1")],
        {
            "batch_1": page(["6591234567", "6591234567", "6598765432"]),
            "batch_2": page(["6598765432", "6591234567", "6591234567"]),
        },
        DATE,
        "ambiguous",
    ),
    (
        "no Date header: found but not placed",
        [probe()],
        {"batch_1": page(["6591234567", "6591234567", "6598765432"])},
        None,
        "ambiguous",
    ),
    ("none", [], {}, DATE, "not"),
]


@pytest.mark.parametrize(
    ("case", "listed", "pages", "date", "expected"), BATCH_CASES, ids=[c[0] for c in BATCH_CASES]
)
def test_batch_verdict(
    case: str,
    listed: list[pa.Message],
    pages: dict[str, pa.Page],
    date: str | None,
    expected: str,
) -> None:
    candidates = rb.batch_candidates(
        BATCH, listed, not_before=rb.earliest_post_time(date, 3.0), known={"batch_known"}
    )
    assert {c.batch_id for c in candidates} <= set(pages)
    verdict = rb.batch_verdict(BATCH, [(c, pages[c.batch_id]) for c in candidates])
    if expected == "not":
        assert verdict == rb.NOT_APPLIED
    elif expected == "ambiguous":
        assert isinstance(verdict, rb.Ambiguous) and len(verdict.candidates) >= 1
    else:
        assert isinstance(verdict, rb.Applied)
        assert verdict.object.batch_id == expected and verdict.object.confirmed_by_readback


def test_a_page_of_a_longer_batch_agrees_when_its_recipients_are_the_file_s() -> None:
    assert rb.batch_agrees(BATCH, page(["6591234567", "6598765432"], more=True))
    assert not rb.batch_agrees(BATCH, page(["6591234567", "6590000000"], more=True))
    assert not rb.batch_agrees(BATCH, page(["6598765432", "6598765432"], more=True))


def test_sent_batch_read_from_csv_as_the_server_reads_it() -> None:
    data = b'Recipient, LANGUAGE ,body\r\n 6591234567 ,ENGLISH,"Hi, ""Tan""\nBye"\r\n,,\r\n'
    sent = rb.sent_batch_from_csv(data)
    assert sent.rows == (rb.SentRow("6591234567", "english", {"body": 'Hi, "Tan"\nBye'}),)
    assert sent.probe == "6591234567"
    # the server keeps only the variables of the row's language: a subset matches
    row = rb.SentRow("6591234567", "english", {"body": "Hi", "name": "Tan"})
    assert row.matches(
        pa.Message(id="m", recipient="6591234567", language="english", values={"body": "Hi"})
    )
    assert not row.matches(
        pa.Message(id="m", recipient="6591234567", language="english", values={"body": "Yo"})
    )


def test_mask_recipient() -> None:
    assert rb.mask_recipient("6591234567") == "******4567"
    assert rb.mask_recipient("123") == "123"


# -- retries: the existing rules, in the same verdict types -------------------------------


@pytest.mark.parametrize(
    ("attempts_before", "status_after", "attempts_after", "expected"),
    [
        (1, "enqueued", 2, "applied"),  # a new attempt
        (2, "success", 2, "not"),  # the same count
        (None, "failure", None, "ambiguous"),  # no counts, no Date: cannot tell
    ],
)
def test_retry_verdict(
    attempts_before: int | None, status_after: str, attempts_after: int | None, expected: str
) -> None:
    read = pa.Message(
        id="message_1", latest_status=pa.MessageStatus(status_after), num_attempts=attempts_after
    )
    verdict = rb.retry_verdict(read, attempts_before=attempts_before, server_date=None, elapsed=1.0)
    kinds = {"applied": rb.Applied, "not": rb.NotApplied, "ambiguous": rb.Ambiguous}
    assert isinstance(verdict, kinds[expected])


def test_batch_retry_verdict() -> None:
    failed = pa.MessageStatus.FAILURE
    before = {"m1": (failed, 1), "m2": (failed, 1)}
    took = rb.batch_retry_verdict(
        "b", before, [("m1", pa.MessageStatus.CREATED, 2), ("m2", failed, 1)]
    )
    assert took == rb.Applied("b")
    assert (
        rb.batch_retry_verdict("b", before, [("m1", failed, 1), ("m2", failed, 1)])
        == rb.NOT_APPLIED
    )
    assert isinstance(rb.batch_retry_verdict("b", before, []), rb.Ambiguous)


# -- the createdAt rule for a lost retry without a known attempt count ---------------------

#: a read answered 0.2 s after the POST was sent, in the server's second 10:00:00 (its Date
#: header): the POST reached the server no earlier than 09:59:59.8, less the 2 s allowance.
READ = "Wed, 02 Dec 2026 10:00:00 GMT"


def attempts(*offsets: float, status: str = "failure") -> pa.Message:
    """A message read back; its attempts created ``offsets`` s after 10:00:00 (server clock),
    newest first."""
    tries = tuple(
        pa.MessageAttempt(status=pa.MessageStatus(status), created_at=POST + timedelta(seconds=o))
        for o in offsets
    )
    return pa.Message(id="message_1", latest_status=pa.MessageStatus(status), attempts=tries)


@pytest.mark.parametrize(
    ("case", "read", "date", "expected"),
    [
        ("an attempt made at the POST (a prompt read)", attempts(0.3, -3600), READ, "applied"),
        ("late in the Date header's second", attempts(0.9, -3600), READ, "applied"),
        ("within the clock allowance before it", attempts(-1.5, -3600), READ, "applied"),
        ("the newest attempt is an hour old", attempts(-3600, -7200), READ, "not"),
        ("just outside the allowance", attempts(-2.5, -3600), READ, "not"),
        ("a single attempt was never retried", attempts(0.3), READ, "not"),
        ("no Date header", attempts(0.3, -3600), None, "ambiguous"),
        (
            "no createdAt",
            pa.Message(id="m", attempts=(pa.MessageAttempt(), pa.MessageAttempt())),
            READ,
            "ambiguous",
        ),
    ],
)
def test_the_created_at_rule_decides_a_retry_without_a_count(
    case: str, read: pa.Message, date: str | None, expected: str
) -> None:
    verdict = rb.retry_verdict(read, attempts_before=None, server_date=date, elapsed=0.2)
    kinds = {"applied": rb.Applied, "not": rb.NotApplied, "ambiguous": rb.Ambiguous}
    assert isinstance(verdict, kinds[expected]), case


def test_the_previous_rule_left_a_prompt_read_unknown() -> None:
    """What the createdAt rule fixes: the Date-second rule cannot say "took" for an attempt
    made at the POST when the read follows within a second (the common case)."""
    from postman_async.protocol import retry_applied

    read = attempts(0.3, -3600)
    assert retry_applied(read, attempts_before=None, server_date=READ, elapsed=0.2) is None
    assert isinstance(
        rb.retry_verdict(read, attempts_before=None, server_date=READ, elapsed=0.2), rb.Applied
    )


def test_a_known_count_is_exact_whatever_the_times() -> None:
    read = attempts(0.3, -3600)  # two attempts, the newest at the POST
    assert (
        rb.retry_verdict(read, attempts_before=2, server_date=READ, elapsed=0.2) == rb.NOT_APPLIED
    )
    assert isinstance(
        rb.retry_verdict(read, attempts_before=1, server_date=None, elapsed=0.2), rb.Applied
    )


# -- the duplicate-upload guard and light batch reads -------------------------------------


def test_existing_batches_are_the_candidates_that_agree() -> None:
    listed = [probe("batch_2", at=-600.0, total=3), probe("batch_1", at=-7200.0, total=2)]
    window_start = POST - timedelta(hours=24)
    candidates = rb.batch_candidates(BATCH, listed, not_before=window_start)
    assert [c.batch_id for c in candidates] == ["batch_2", "batch_1"]
    assert candidates[0].created_at == POST - timedelta(seconds=600)
    pages = {
        "batch_2": page(["6591234567", "6598765432", "6591234567"]),
        "batch_1": page(["6591234567", "6598765432"]),  # another file: 2 rows
    }
    found = rb.existing_batches(BATCH, [(c, pages[c.batch_id]) for c in candidates])
    assert found == (rb.ExistingBatch("batch_2", POST - timedelta(seconds=600)),)
    # outside the window: not a candidate at all; this upload's own part: left out
    assert rb.batch_candidates(BATCH, listed, not_before=POST) == ()
    assert [
        c.batch_id
        for c in rb.batch_candidates(BATCH, listed, not_before=window_start, known={"batch_2"})
    ] == ["batch_1"]


def test_a_light_read_keeps_the_probe_rows_and_every_recipient() -> None:
    data = (
        b"recipient,language,body\r\n6591234567,english,a\r\n6598765432,english,b\r\n"
        b"6591234567,english,c\r\n6598765432,english,d\r\n"
    )
    light = rb.sent_batch_from_csv(data, light=True)
    full = rb.sent_batch_from_csv(data)
    assert [r.values for r in light.rows] == [(("body", "a"),), (("body", "c"),)]
    assert light.size == full.size == 4 and light.recipients == full.recipients
    assert light.probe == full.probe == "6591234567"
    one_page = page(["6598765432", "6591234567", "6598765432", "6591234567"])
    assert rb.batch_agrees(light, one_page) and rb.batch_agrees(full, one_page)
