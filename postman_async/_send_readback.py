"""The client's side of a send or batch upload whose answer was lost (timeout, reset after
writing, 5xx, unreadable 2xx): the reads, the waits and the errors. What the reads mean is
decided in :mod:`postman_async.readback` (pure). The POST is never re-sent blindly: the
recipient's recent messages are read (one search listing in the common case, at most
:data:`SEARCH_MAX_PAGES` pages), again after each ``readback_waits`` while nothing (or more
than one thing) is found. Found: returned with ``confirmed_by_readback=True``. Several:
:class:`AmbiguousSendError`. None: :class:`NotSentError` ("not found by then"), or after a
2xx :class:`OutcomeUnknownError` (``applied=True``). A failed read: :class:`OutcomeUnknownError`.
Only a caller who asked (``resend_if_not_found``) gets one re-send after :class:`NotSentError`.
Batch uploads use the same reads (:mod:`postman_async._batch_readback`).

Residual risk: a request still in flight at the server after the last read (queued behind a
slow proxy, say) creates its message later; "not found" was then wrong, and an opted-in
re-send makes a second SMS.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, TypeVar

import attrs

from .converter import decode
from .errors import (
    AmbiguousSendError,
    MalformedResponseError,
    NotSentError,
    OutcomeUnknownError,
    PostmanError,
    ValidationError,
)
from .models import Message, Page, Priority
from .policy import CallMeter
from .protocol import Request, decode_body, list_messages_request
from .ratelimit import Sleep
from .readback import (
    CLOCK_SKEW,
    Ambiguous,
    Applied,
    SentMessage,
    Verdict,
    earliest_post_time,
    mask_recipient,
    parse_http_date,
    send_verdict,
)

if TYPE_CHECKING:
    from .client import PostmanClient

logger = logging.getLogger("postman_async")
T = TypeVar("T")

#: The search listing's page size and the most pages read per search.
SEARCH_PAGE_SIZE = 100
SEARCH_MAX_PAGES = 3
#: How many message (and batch) IDs a client remembers having created or returned.
KNOWN_IDS = 10_000
DEFAULT_WAITS = (2.0,)


class RecentIds:
    """The last ``size`` IDs added (a bounded set, oldest forgotten first)."""

    def __init__(self, size: int = KNOWN_IDS) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._size = size

    def add(self, item: str) -> None:
        self._ids[item] = None
        self._ids.move_to_end(item)
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def __len__(self) -> int:
        return len(self._ids)


@attrs.define
class ReadbackState:
    """Per root client (shared by its views): its read-back settings and the IDs it knows."""

    sleep: Sleep
    waits: tuple[float, ...] = DEFAULT_WAITS
    resend_if_not_found: bool = False
    messages: RecentIds = attrs.field(factory=RecentIds)
    batches: RecentIds = attrs.field(factory=RecentIds)

    @classmethod
    def of(cls, sleep: Sleep, waits: Iterable[float], resend: bool) -> ReadbackState:
        """Checked settings: at most 3 waits of 0 to 60 s each."""
        waits = tuple(waits)
        if len(waits) > 3 or not all(isinstance(w, (int, float)) and 0 <= w <= 60 for w in waits):
            raise ValidationError("readback_waits", "at most 3 waits, each 0 to 60 seconds")
        return cls(sleep=sleep, waits=waits, resend_if_not_found=bool(resend))


@attrs.frozen
class Lost:
    """A POST whose answer was lost: why, when it was sent (session clock), and ``applied``
    (``True``: a 2xx arrived, so it was created; ``None``: unknown)."""

    cause: BaseException
    sent_at: float
    applied: bool | None = None


@attrs.frozen
class Search:
    """One search listing of a recipient: what it listed and the window it covered."""

    messages: tuple[Message, ...]
    not_before: datetime | None  # the earliest createdAt that can be the POST's
    read_at: datetime | None  # the server's time of the read (its Date header)
    complete: bool  # it reached back past ``not_before`` (or the end of the listing)


def _page(body: bytes) -> Page:
    return decode(Page, decode_body(body))


async def _post(
    client: PostmanClient, request: Request, priority: Priority | None, model: type[T]
) -> T | Lost:
    """The POST's decoded answer, or why it is lost."""
    started = client._session().now()
    try:
        raw = await client._send(request, priority)
    except OutcomeUnknownError as exc:
        sent_at = exc.sent_at if exc.sent_at is not None else started
        return Lost(exc.cause or exc, sent_at)
    except MalformedResponseError as exc:  # the session's "unreadable 2xx" for a POST
        return Lost(exc, started, applied=True)
    try:
        return decode(model, decode_body(raw.body))
    except MalformedResponseError as exc:
        return Lost(exc, started, applied=True)


Since = Callable[[str | None], datetime | None]


def since_post(client: PostmanClient, lost: Lost) -> Since:
    """The earliest ``createdAt`` the lost POST can have given, from a read's ``Date``
    header (:func:`readback.earliest_post_time`), as the read arrives."""
    http = client._session()
    return lambda date: earliest_post_time(date, http.now() - lost.sent_at)


async def search_recipient(
    client: PostmanClient,
    recipient: str,
    priority: Priority | None,
    since: Since,
    *,
    page_size: int = SEARCH_PAGE_SIZE,
    max_pages: int = SEARCH_MAX_PAGES,
) -> Search:
    """The recipient's messages, newest first, back to ``since`` (the earliest creation
    time that matters, from the first page's ``Date`` header): at most ``max_pages`` pages,
    one in the common case."""
    messages: list[Message] = []
    not_before = read_at = None
    cursor: str | None = None
    for number in range(max_pages):
        request = list_messages_request(
            client.campaign_id, limit=page_size, after=cursor, search=recipient
        )
        raw = await client._send(request, priority, _page)
        page: Page = raw.value
        date = raw.headers.get("Date")
        read_at = parse_http_date(date) or read_at
        if number == 0:
            not_before = since(date)
        messages.extend(page.data)
        oldest = page.data[-1].created_at if page.data else None
        reached = not_before is not None and oldest is not None and oldest < not_before
        if page.next_cursor is None or reached:
            return Search(tuple(messages), not_before, read_at, complete=True)
        cursor = page.next_cursor
    return Search(tuple(messages), not_before, read_at, complete=False)


def _unknown(what: str, lost: Lost, reason: str) -> OutcomeUnknownError:
    return OutcomeUnknownError(
        f"{what}: outcome unknown ({_describe(lost.cause)}); {reason}; it was not re-sent",
        cause=lost.cause,
        applied=lost.applied,
        sent_at=lost.sent_at,
    )


def _describe(cause: BaseException) -> str:
    return f"{type(cause).__name__}: {cause}"


def _window(search: Search) -> str:
    if search.not_before is None:
        return "at any time (no Date header: the POST could not be placed in time)"
    return (
        f"created since {search.not_before.isoformat(timespec='seconds')} (the POST's time "
        f"on the server's clock, less {CLOCK_SKEW:g} s for clock skew)"
    )


async def _read_back(
    client: PostmanClient,
    what: str,
    recipient: str,
    lost: Lost,
    priority: Priority | None,
    decide: Callable[[Search], Awaitable[Verdict[T]]],
) -> tuple[Verdict[T], Search]:
    """Search the recipient's messages and decide; again after each wait while nothing, or
    more than one thing, is found. A failed read is the outcome unknown."""
    state: ReadbackState = client._readback
    for attempt in range(1 + len(state.waits)):
        if attempt > 0:
            await state.sleep(state.waits[attempt - 1])
        try:
            search = await search_recipient(client, recipient, priority, since_post(client, lost))
        except PostmanError as exc:
            raise _unknown(what, lost, f"reading it back failed too ({exc})") from exc
        verdict = await decide(search)
        if isinstance(verdict, Applied):
            break
        if not search.complete and not isinstance(verdict, Ambiguous):
            raise _unknown(what, lost, "the recipient has too many recent messages to search")
    return verdict, search


def _ambiguous(
    what: str, lost: Lost, search: Search, found: str, candidates: tuple[T, ...], ids: list[str]
) -> AmbiguousSendError:
    return AmbiguousSendError(
        f"{what}: its answer was lost ({_describe(lost.cause)}); reading back found "
        f"{len(candidates)} {found} {_window(search)} that this client did not know: "
        f"{', '.join(ids)}; it was not re-sent",
        candidates=candidates,
        cause=lost.cause,
        sent_at=lost.sent_at,
    )


async def send_message(
    client: PostmanClient, request: Request, priority: Priority | None, *, resend: bool | None
) -> Message:
    """Send one message; a lost answer is read back (see the module docstring).
    ``resend``: re-send once after :class:`NotSentError` (``None``: the client's default)."""
    sent = SentMessage(**request.json_body)
    if resend is None:
        resend = client._readback.resend_if_not_found
    try:
        return await _send_once(client, request, sent, priority, resent=False)
    except NotSentError:
        if not resend:
            raise
    logger.warning(
        "a send whose answer was lost was not found by reading back; re-sending it once "
        "(resend_if_not_found)",
        extra={"postman": {"campaign": client.campaign_id, "endpoint": request.path}},
    )
    return await _send_once(client, request, sent, priority, resent=True)


async def _send_once(
    client: PostmanClient,
    request: Request,
    sent: SentMessage,
    priority: Priority | None,
    *,
    resent: bool,
) -> Message:
    answer = await _post(client, request, priority, Message)
    if not isinstance(answer, Lost):
        client._readback.messages.add(answer.id)
        return answer
    meter = CallMeter()
    try:
        return await _reconcile_send(
            client.with_options(meter=meter), sent, answer, priority, resent=resent
        )
    finally:
        _log_spent(client, "send", meter.calls)


async def _reconcile_send(
    client: PostmanClient, sent: SentMessage, lost: Lost, priority: Priority | None, *, resent: bool
) -> Message:
    state: ReadbackState = client._readback
    what = f"send to {mask_recipient(sent.recipient)}"

    async def decide(search: Search) -> Verdict[Message]:
        return send_verdict(
            sent, search.messages, not_before=search.not_before, known=state.messages
        )

    verdict, search = await _read_back(client, what, sent.recipient, lost, priority, decide)
    if isinstance(verdict, Applied):
        message: Message = attrs.evolve(verdict.object, confirmed_by_readback=True)
        state.messages.add(message.id)
        logger.info("send %s: answer lost; confirmed by read-back", message.id)
        return message
    if isinstance(verdict, Ambiguous):
        ids = [m.id for m in verdict.candidates]
        found = "messages with the same language and values"
        raise _ambiguous(what, lost, search, found, verdict.candidates, ids)
    raise _not_found(what, sent.recipient, lost, search, 1 + len(state.waits), resent)


def _not_found(
    what: str, recipient: str, lost: Lost, search: Search, reads: int, resent: bool
) -> OutcomeUnknownError:
    read_at = search.read_at.isoformat(timespec="seconds") if search.read_at else "unknown"
    found = f"{reads} read(s) of the recipient's messages {_window(search)}, the last at {read_at}"
    if lost.applied:
        return _unknown(
            what, lost, f"the server answered 2xx (created), but {found} did not find it"
        )
    then = (
        "This was the one re-send asked for (resend_if_not_found); it is not re-sent again."
        if resent
        else "It was not re-sent; pass resend_if_not_found=True to re-send it once."
    )
    return NotSentError(
        f"{what}: not found. Its answer was lost ({_describe(lost.cause)}) and {found}, found "
        "nothing. Not found by then is not proof that it was not sent: a request still in "
        f"flight at the server could create it later. {then}",
        recipient=mask_recipient(recipient),
        searched_from=search.not_before,
        searched_at=search.read_at,
        reads=reads,
        resent=resent,
        cause=lost.cause,
        sent_at=lost.sent_at,
    )


def _log_spent(client: PostmanClient, what: str, calls: int) -> None:
    logger.info(
        "%s read-back spent %d call(s)",
        what,
        calls,
        extra={"postman": {"campaign": client.campaign_id, "readback_calls": calls}},
    )
