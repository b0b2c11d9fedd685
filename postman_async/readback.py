"""Did a POST whose answer was lost take? One pure module decides, for all four POSTs.

Each function takes what was sent and what was read back, and returns a verdict:
:class:`Applied` (with the created object), :class:`NotApplied` (nothing read back shows it,
*as of the read*) or :class:`Ambiguous` (with the candidates). No I/O and no clock: the client
reads back (a search listing by recipient, one page of a batch, a message GET) and asks here.

**Sends** (reference §2.1, §2.4). ``GET /campaigns/{id}/messages?search=<recipient>`` lists a
recipient's messages newest first, with values, language, ``createdAt`` and ``batchId``
(``search`` is a substring match, so the recipient is compared exactly here). A message is the
lost send's when:

- it has the same recipient, language and values, and no batch (a field not listed cannot
  rule a message out: it makes the verdict ambiguous, never "not applied");
- it was created at or after the POST on the server's clock: :func:`earliest_post_time` (the
  read's ``Date`` header less the seconds since the POST was sent, less :data:`CLOCK_SKEW`);
- it is not one this client already knows (created or returned), so a concurrent identical
  send is never taken for the lost one.

One such message: applied. Several, or one that cannot be placed in time (no ``Date`` header
or no ``createdAt``): ambiguous. None: not applied, which means *not found by then*, never
*certainly not sent*.

**Batch uploads.** One recipient of the file (its first row) is searched; a message matching
one of that recipient's rows (language, and values as far as the server kept them) names a
candidate batch (``batchId``), dated as above and not one this client knows. One page of each
candidate's ``GET /batch/{id}/messages`` confirms it: the row count and the recipients agree.

**Retries**: exact from the attempt count read before (:func:`rules.retry_took`), else by the
createdAt rule (:func:`retry_created_after`). **The guard** against uploading a file twice
uses the batch read-back over a window instead: :func:`existing_batches`.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Container, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Generic, TypeVar

import attrs

from ._csv_split import text_lines
from .models import BatchSendResult, Message, MessageStatus, Page
from .rules import retry_took

T = TypeVar("T")

#: Seconds allowed before the POST's estimated server time: the ``Date`` header has 1-second
#: resolution, and ``createdAt`` may be stamped by another machine than ``Date``.
CLOCK_SKEW = 2.0


@attrs.frozen
class Applied(Generic[T]):
    """The POST took; ``object`` is what it created (or the message it retried)."""

    object: T


@attrs.frozen
class NotApplied:
    """Nothing read back shows that the POST took (as of the read)."""


@attrs.frozen
class Ambiguous(Generic[T]):
    """The read cannot tell: ``candidates`` are what could be the POST's doing."""

    candidates: tuple[T, ...]


NOT_APPLIED = NotApplied()
Verdict = Applied[T] | NotApplied | Ambiguous[T]


def _values(value: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(dict(value).items()))


def _match(message: Message, recipient: str, language: str, values: bool | None) -> bool | None:
    """``False``: a field read back differs; ``None``: a field needed was not read back."""
    if message.recipient is not None and message.recipient != recipient:
        return False
    if message.language is not None and message.language.lower() != language:
        return False
    if values is False:
        return False
    if message.recipient is None or message.language is None or values is None:
        return None
    return True


@attrs.frozen
class SentMessage:
    """What a send POST carried (normalised as it was sent)."""

    recipient: str
    language: str
    values: tuple[tuple[str, str], ...] = attrs.field(converter=_values)

    def matches(self, message: Message) -> bool | None:
        """Same recipient, language and values, and not a batch message (``None``: a field
        it needs was not listed, so it cannot be ruled out)."""
        if message.batch_ids:
            return False
        same = None if message.values is None else dict(message.values) == dict(self.values)
        return _match(message, self.recipient, self.language, same)


@attrs.frozen
class SentRow:
    """One row of a batch upload, as the server reads it."""

    recipient: str
    language: str
    values: tuple[tuple[str, str], ...] = attrs.field(converter=_values)

    def matches(self, message: Message) -> bool | None:
        """Same recipient and language; the message's values are among the row's (the server
        keeps only the variables of the row's language). ``None``: cannot be ruled out."""
        row = dict(self.values)
        kept = message.values
        same = None if kept is None else all(row.get(k) == v for k, v in kept.items())
        return _match(message, self.recipient, self.language, same)


@attrs.frozen
class SentBatch:
    """What a batch upload carried: its rows in file order (or only the probe recipient's,
    when read with ``light=True``), how many rows it had and their recipients."""

    rows: tuple[SentRow, ...]
    size: int = attrs.field(
        default=attrs.Factory(lambda self: len(self.rows), takes_self=True), eq=False
    )
    recipients: Counter[str] = attrs.field(
        default=attrs.Factory(lambda self: Counter(r.recipient for r in self.rows), True),
        eq=False,
    )

    @property
    def probe(self) -> str:
        """The recipient searched to find the batch (the first row's)."""
        return self.rows[0].recipient


def sent_batch_from_csv(data: bytes, *, light: bool = False) -> SentBatch:
    """The rows of a (validated) batch CSV, read as the server reads them: header names
    trimmed and lower-cased, blank rows skipped, recipients trimmed, languages lower-cased.
    ``light``: keep only the probe recipient's rows (and every row's recipient), for a file
    of many rows."""
    reader = csv.reader(text_lines(data))
    header = [name.strip().lower() for name in next(reader, [])]
    rows: list[SentRow] = []
    recipients: Counter[str] = Counter()
    for record in reader:
        if not any(cell.strip() for cell in record) or len(record) != len(header):
            continue
        cells = dict(zip(header, record, strict=True))
        recipient = cells.pop("recipient", "").strip()
        recipients[recipient] += 1
        if not light or not rows or recipient == rows[0].recipient:
            language = cells.pop("language", "").strip().lower()
            rows.append(SentRow(recipient, language, cells))
    if not rows:
        raise ValueError("a batch CSV without rows")
    return SentBatch(tuple(rows), sum(recipients.values()), recipients)


def mask_recipient(recipient: str) -> str:
    """A recipient for messages and logs: all but its last 4 digits masked."""
    return "*" * max(0, len(recipient) - 4) + recipient[-4:]


def parse_http_date(value: str | None) -> datetime | None:
    """An HTTP ``Date`` header as an aware datetime; ``None`` when absent or unreadable."""
    if not value:
        return None
    try:
        date = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return date if date.tzinfo is not None else date.replace(tzinfo=timezone.utc)


def earliest_post_time(
    server_date: str | None, elapsed: float, *, skew: float = CLOCK_SKEW
) -> datetime | None:
    """The earliest ``createdAt`` the lost POST can have given, on the server's clock.

    ``server_date`` is the ``Date`` header of a read answered ``elapsed`` seconds (client
    clock) after the POST was sent. The header is truncated to the second, so the server's
    time at that answer is at least the header's, and the POST reached the server at most
    ``elapsed`` seconds before it; ``skew`` more is allowed for a ``createdAt`` stamped on
    another clock. ``None``: no usable header, the POST cannot be placed in time."""
    date = parse_http_date(server_date)
    if date is None:
        return None
    return date - timedelta(seconds=max(0.0, elapsed) + max(0.0, skew))


def _placed(created_at: datetime | None, not_before: datetime | None) -> bool | None:
    """``True``: created at or after ``not_before``; ``False``: before; ``None``: unknown."""
    if created_at is None or not_before is None:
        return None
    return created_at >= not_before


def send_verdict(
    sent: SentMessage,
    messages: Iterable[Message],
    *,
    not_before: datetime | None,
    known: Container[str] = (),
) -> Verdict[Message]:
    """A lost send, from the recipient's messages as listed (newest first): the one message
    that matches, was created at or after ``not_before`` and is not ``known``."""
    placed: list[Message] = []
    unplaced: list[Message] = []
    seen: set[str] = set()
    for message in messages:
        match = sent.matches(message)
        if message.id in seen or message.id in known or match is False:
            continue
        seen.add(message.id)
        where = _placed(message.created_at, not_before)
        if where is not False:
            (placed if where and match else unplaced).append(message)
    if len(placed) == 1 and not unplaced:
        return Applied(placed[0])
    if placed or unplaced:
        return Ambiguous((*placed, *unplaced))
    return NOT_APPLIED


@attrs.frozen
class BatchCandidate:
    """A batch that a lost upload may have created. ``placed``: its message was created at
    or after the upload (``False``: it could not be placed in time); ``total_messages``: the
    row count the listing gave for it, if any; ``created_at``: when the batch (else its
    message) was created, if listed."""

    batch_id: str
    placed: bool
    total_messages: int | None = None
    created_at: datetime | None = None


def batch_candidates(
    sent: SentBatch,
    messages: Iterable[Message],
    *,
    not_before: datetime | None,
    known: Container[str] = (),
) -> tuple[BatchCandidate, ...]:
    """The batches named by the probe recipient's messages (newest first) that match one of
    its rows, were not created before ``not_before``, and are not ``known``."""
    rows = [row for row in sent.rows if row.recipient == sent.probe]
    found: dict[str, BatchCandidate] = {}
    for message in messages:
        where = _placed(message.created_at, not_before)
        matches = {row.matches(message) for row in rows}
        if where is False or matches <= {False}:
            continue
        for batch_id in message.batch_ids:
            if batch_id in known or batch_id in found:
                continue
            batch = message.batch if message.batch and message.batch.id == batch_id else None
            total = batch.total_messages if batch is not None else None
            created = (batch.created_at if batch is not None else None) or message.created_at
            placed = where is True and True in matches
            found[batch_id] = BatchCandidate(batch_id, placed, total, created)
    return tuple(found.values())


def batch_agrees(sent: SentBatch, page: Page, total_messages: int | None = None) -> bool:
    """One page of a batch (the first, newest first) agrees with the upload: as many messages
    as rows and the same recipients; for a batch longer than the page, a page of the file's
    recipients (none more often than in the file)."""
    rows = sent.size
    if total_messages is not None and total_messages != rows:
        return False
    listed = Counter(message.recipient or "" for message in page.data)
    if page.next_cursor is None:
        return len(page.data) == rows and listed == sent.recipients
    return len(page.data) < rows and not (listed - sent.recipients)


def batch_verdict(
    sent: SentBatch, found: Iterable[tuple[BatchCandidate, Page]]
) -> Verdict[BatchSendResult]:
    """A lost batch upload, from one page of each candidate batch: the one that agrees
    (:func:`batch_agrees`) and was placed after the upload."""
    agreeing = [c for c, page in found if batch_agrees(sent, page, c.total_messages)]
    results = tuple(
        BatchSendResult(batch_id=c.batch_id, confirmed_by_readback=True) for c in agreeing
    )
    if len(agreeing) == 1 and agreeing[0].placed:
        return Applied(results[0])
    if agreeing:
        return Ambiguous(results)
    return NOT_APPLIED


@attrs.frozen
class ExistingBatch:
    """A batch already on the server that holds the file being uploaded (the guard)."""

    batch_id: str
    created_at: datetime | None


def existing_batches(
    sent: SentBatch, found: Iterable[tuple[BatchCandidate, Page]]
) -> tuple[ExistingBatch, ...]:
    """The duplicate-upload guard, from one page of each candidate batch (named by the probe
    recipient's messages created within the window, :func:`batch_candidates`): those that
    agree with the file (:func:`batch_agrees`). A candidate that cannot be placed in time
    still counts: the guard refuses rather than guess."""
    return tuple(
        ExistingBatch(c.batch_id, c.created_at)
        for c, page in found
        if batch_agrees(sent, page, c.total_messages)
    )


def retry_created_after(message: Message, not_before: datetime | None) -> bool | None:
    """The createdAt rule for a lost retry when the attempt count before it is unknown.

    A retry that took added the newest attempt while the POST was at the server, so its
    ``createdAt`` (milliseconds, the server's clock) is at or after ``not_before``, the
    earliest time the POST can have reached the server (:func:`earliest_post_time`). Every
    older attempt was created before. So: a message with a single attempt was never retried
    (``False``, exactly); a newest attempt created before ``not_before``: ``False``; at or
    after: ``True`` (the retry made it, or a concurrent one did at that moment: either way
    a second POST would retry twice). ``None`` only without a ``createdAt`` or a Date.

    The older rule needed the attempt a whole second of the ``Date`` header (plus a margin)
    after ``not_before`` to say ``True``, which a prompt read never shows."""
    if message.attempt_count == 1:
        return False
    newest = message.latest_attempt
    if newest is None or newest.created_at is None or not_before is None:
        return None
    return newest.created_at >= not_before


def retry_verdict(
    message: Message,
    *,
    attempts_before: int | None,
    server_date: str | None,
    elapsed: float,
    status_before: MessageStatus | None = None,
) -> Verdict[Message]:
    """A lost single retry, from the message read back ``elapsed`` seconds after the POST
    was sent (``server_date``: that read's ``Date`` header). Exact from what was known before
    (:func:`rules.retry_took`: a new attempt, or a message that left ``failure``), else by
    the createdAt rule (:func:`retry_created_after`)."""
    took = retry_took(
        status_before=status_before,
        attempts_before=attempts_before,
        status_after=message.latest_status,
        attempts_after=message.attempt_count,
    )
    if took is None:
        took = retry_created_after(message, earliest_post_time(server_date, elapsed))
    if took is None:
        return Ambiguous((message,))
    return Applied(message) if took else NOT_APPLIED


def batch_retry_verdict(
    batch_id: str,
    before: Mapping[str, tuple[MessageStatus | None, int | None]],
    after: Iterable[tuple[str, MessageStatus | None, int | None]],
) -> Verdict[str]:
    """A lost batch retry, from the (status, attempts) of the messages it would retry, read
    before and after (:func:`rules.retry_took`): one that took means it fired."""
    took = [
        retry_took(
            status_before=before[message_id][0],
            attempts_before=before[message_id][1],
            status_after=status,
            attempts_after=attempts,
        )
        for message_id, status, attempts in after
        if message_id in before
    ]
    if any(t is True for t in took):
        return Applied(batch_id)
    if took and all(t is False for t in took):
        return NOT_APPLIED
    return Ambiguous((batch_id,))
