"""Typed, frozen models of the Postman v2 payloads.

Every field but ``id`` is optional: each endpoint returns a different subset of the message object
(send responses carry no ``templateBody``/``attempts``; batch listings add ``numAttempts`` and
``messageAttempts``). Unknown fields are ignored and unknown enum values are kept, never fatal.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import attrs


class _OpenEnum(str, enum.Enum):
    """A string enum that keeps values it does not know instead of failing.

    ``MessageStatus("paused")`` gives a member named ``UNKNOWN`` whose value is ``"paused"``.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if isinstance(value, str):
            member = str.__new__(cls, value)
            member._name_ = "UNKNOWN"
            member._value_ = value
            return member
        return None

    @property
    def is_known(self) -> bool:
        return self._name_ != "UNKNOWN"

    def __str__(self) -> str:
        return str(self.value)


class MessageStatus(_OpenEnum):
    """A message's ``latestStatus`` (and an attempt's ``status``). Which ones are final, and
    what they allow, is in :mod:`postman_async.rules`."""

    CREATED = "created"
    ENQUEUED = "enqueued"
    SENDING = "sending"
    SENT = "sent"
    SENT_TO_TELCO = "sent_to_telco"
    SUCCESS = "success"
    FAILURE = "failure"


class BatchStatus(_OpenEnum):
    """A batch's status. Only the two retryable values are documented; ``messages_enqueuing``
    is this SDK's name for the in-progress state, ``success`` appears in a 2024 example."""

    MESSAGES_ENQUEUING = "messages_enqueuing"
    MESSAGES_ENQUEUED = "messages_enqueued"
    MESSAGES_ENQUEUING_FAILED = "messages_enqueuing_failed"
    SUCCESS = "success"


class Language(_OpenEnum):
    ENGLISH = "english"
    CHINESE = "chinese"
    MALAY = "malay"
    TAMIL = "tamil"


class Priority(enum.IntEnum):
    """Limiter lane. ``HIGH`` (the client's default) goes ahead of ``BULK`` (the orchestrator's)."""

    HIGH = 0
    BULK = 1


@attrs.frozen
class MessageAttempt:
    """One delivery attempt. Decodes both shapes: ``attempts[]`` items (nested
    ``error{type, code}``) and batch listings' flat ``messageAttempts[]`` items."""

    status: MessageStatus | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    error_type: str | None = None
    error_code: str | None = None
    id: str | None = None
    message_id: str | None = None
    external_attempt_id: str | None = None
    creator_id: str | None = None


@attrs.frozen
class TemplateBody:
    """A campaign's template body, as embedded in a message (its text and parameters)."""

    id: str | None = None
    template_id: str | None = None
    language: str | None = None
    body: str | None = None
    creator_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@attrs.frozen
class BatchMessageLink:
    """The join row between a batch and a message (``BatchMessage`` in payloads)."""

    id: str | None = None
    batch_id: str | None = None
    message_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


@attrs.frozen
class Batch:
    """A batch as nested in a message's ``batches[]`` (there is no endpoint to GET a batch)."""

    id: str
    status: BatchStatus | None = None
    original_file_name: str | None = None
    campaign_id: str | None = None
    creator_id: str | None = None
    total_messages: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    batch_message: BatchMessageLink | None = None


@attrs.frozen
class Message:
    """A message, as returned by any endpoint (fields an endpoint omits are ``None``)."""

    id: str
    recipient: str | None = None
    values: dict[str, str] | None = None
    language: str | None = None
    full_message: str | None = None
    latest_status: MessageStatus | None = None
    template_body_id: str | None = None
    campaign_id: str | None = None
    creator_id: str | None = None
    creator_email: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    template_body: TemplateBody | None = None
    batches: tuple[Batch, ...] | None = None
    batch_id: str | None = None
    attempts: tuple[MessageAttempt, ...] | None = None
    message_attempts: tuple[MessageAttempt, ...] | None = None
    num_attempts: int | None = None
    error: str | None = None
    #: Set by the client, never by the server: the send's answer was lost (or unreadable)
    #: and this message was found by reading the recipient's messages back.
    confirmed_by_readback: bool = attrs.field(default=False, eq=False)

    @property
    def attempt_count(self) -> int | None:
        """Attempts so far (``numAttempts``, else the length of an attempt list), if known."""
        if self.num_attempts is not None:
            return self.num_attempts
        for attempts in (self.attempts, self.message_attempts):
            if attempts is not None:
                return len(attempts)
        return None

    @property
    def latest_attempt(self) -> MessageAttempt | None:
        """The newest attempt, by ``createdAt`` when present (lists are newest first)."""
        attempts = self.attempts if self.attempts else self.message_attempts
        if not attempts:
            return None
        dated = [a for a in attempts if a.created_at is not None]
        if len(dated) == len(attempts):
            return max(dated, key=lambda a: a.created_at or datetime.min)
        return attempts[0]

    @property
    def latest_error_code(self) -> str | None:
        """The newest attempt's delivery error code (``recipient_unavailable``, ...), if any."""
        attempt = self.latest_attempt
        return attempt.error_code if attempt else None

    @property
    def batch(self) -> Batch | None:
        """The batch this message belongs to, when the payload says (``batches[0]``)."""
        return self.batches[0] if self.batches else None

    @property
    def batch_ids(self) -> tuple[str, ...]:
        """The IDs of the batches this message belongs to."""
        if self.batches:
            return tuple(b.id for b in self.batches)
        return (self.batch_id,) if self.batch_id else ()


@attrs.frozen
class PageInfo:
    """A listing page's cursors: pass ``next`` as ``after`` to read the next (older) page."""

    has_next_page: bool = False
    has_previous_page: bool = False
    start_cursor: str | None = None
    end_cursor: str | None = None


@attrs.frozen
class Page:
    """One page of a listing: ``data`` newest first, and the cursors to move on."""

    data: tuple[Message, ...]
    page_data: PageInfo = PageInfo()

    @property
    def next_cursor(self) -> str | None:
        """The cursor of the next (older) page, or ``None`` on the last page."""
        return self.page_data.end_cursor if self.page_data.has_next_page else None


@attrs.frozen
class BatchPart:
    """One file of a batch upload and the batch it created: rows ``first_row`` to
    ``last_row`` of the input (1-based, message rows only)."""

    batch_id: str
    first_row: int
    rows: int
    #: Set by the client: this part's answer was lost and its batch was found by reading back.
    confirmed_by_readback: bool = False

    @property
    def last_row(self) -> int:
        """The index of the part's last row in the input (1-based)."""
        return self.first_row + self.rows - 1


@attrs.frozen
class BatchSendResult:
    """Answer to a batch send: ``{"isValid": true, "batchId": "..."}``.

    ``send_batch`` fills ``parts``: one per file uploaded, in order. An input larger than one
    file may hold is split, and each part is a batch of its own: ``batch_id`` is then the
    first part's, and ``batch_ids`` lists them all."""

    batch_id: str
    is_valid: bool = True
    #: Set by the client: the upload's answer was lost (or unreadable) and this batch was
    #: found by reading back (a search by recipient, confirmed by one page of the batch). For
    #: a split upload: some part's was (``parts`` says which).
    confirmed_by_readback: bool = attrs.field(default=False, eq=False)
    #: Set by the client: every file uploaded and its batch.
    parts: tuple[BatchPart, ...] = attrs.field(default=(), eq=False)

    @property
    def batch_ids(self) -> tuple[str, ...]:
        """Every batch this upload created (one per part), in order."""
        return tuple(p.batch_id for p in self.parts) or (self.batch_id,)

    @property
    def rows(self) -> int | None:
        """The message rows uploaded, when ``parts`` says."""
        return sum(p.rows for p in self.parts) if self.parts else None
