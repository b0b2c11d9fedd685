"""The reads around one batch upload (one file): its lost answer read back, and the guard
that refuses to upload a file whose batch already exists.

Both find a batch the same way (:mod:`postman_async.readback` decides): the probe recipient's
messages (the file's first row) name candidate batches, and one page of each confirms it (row
count and recipients). A lost answer looks since the POST, at batches this client does not
know; the guard looks back over its window at every batch but those of the upload at hand.
"""

from __future__ import annotations

import logging
from collections.abc import Container
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ._send_readback import (
    Lost,
    ReadbackState,
    Search,
    _ambiguous,
    _log_spent,
    _not_found,
    _page,
    _post,
    _read_back,
    _unknown,
    search_recipient,
)
from .errors import DuplicateUploadError, PostmanError
from .models import BatchSendResult, Page, Priority
from .policy import CallMeter
from .protocol import Request, list_batch_messages_request
from .readback import (
    Ambiguous,
    Applied,
    BatchCandidate,
    SentBatch,
    Verdict,
    batch_candidates,
    batch_verdict,
    existing_batches,
    parse_http_date,
    sent_batch_from_csv,
)

if TYPE_CHECKING:
    from .client import PostmanClient

logger = logging.getLogger("postman_async")

#: The most candidate batches confirmed (one page each) after a lost answer.
MAX_BATCH_CANDIDATES = 3
#: The guard's search: pages of 1,000 of the probe recipient's messages, at most 5 pages.
GUARD_PAGE_SIZE = 1000
GUARD_MAX_PAGES = 5
#: The most candidate batches the guard confirms (one page each).
MAX_GUARD_CANDIDATES = 5


async def upload(
    client: PostmanClient, request: Request, priority: Priority | None, what: str
) -> BatchSendResult:
    """Upload one file; a lost answer is read back (see :mod:`._send_readback`)."""
    answer = await _post(client, request, priority, BatchSendResult)
    if not isinstance(answer, Lost):
        client._readback.batches.add(answer.batch_id)
        return answer
    sent = sent_batch_from_csv(request.csv_file or b"", light=True)
    meter = CallMeter()
    try:
        return await _reconcile(client.with_options(meter=meter), sent, answer, priority, what)
    finally:
        _log_spent(client, "batch upload", meter.calls)


async def _reconcile(
    client: PostmanClient, sent: SentBatch, lost: Lost, priority: Priority | None, what: str
) -> BatchSendResult:
    state: ReadbackState = client._readback

    async def decide(search: Search) -> Verdict[BatchSendResult]:
        return await _confirm(client, what, sent, search, lost, priority)

    verdict, search = await _read_back(client, what, sent.probe, lost, priority, decide)
    if isinstance(verdict, Applied):
        result: BatchSendResult = verdict.object
        state.batches.add(result.batch_id)
        logger.info("batch %s: answer lost; confirmed by read-back", result.batch_id)
        return result
    if isinstance(verdict, Ambiguous):
        ids = [b.batch_id for b in verdict.candidates]
        raise _ambiguous(what, lost, search, "batches with its rows", verdict.candidates, ids)
    raise _not_found(what, sent.probe, lost, search, 1 + len(state.waits), resent=False)


async def _confirm(
    client: PostmanClient,
    what: str,
    sent: SentBatch,
    search: Search,
    lost: Lost,
    priority: Priority | None,
) -> Verdict[BatchSendResult]:
    """One page of each candidate batch, and the verdict on them."""
    state: ReadbackState = client._readback
    candidates = batch_candidates(
        sent, search.messages, not_before=search.not_before, known=state.batches
    )
    if len(candidates) > MAX_BATCH_CANDIDATES:
        return Ambiguous(tuple(BatchSendResult(batch_id=c.batch_id) for c in candidates))
    try:
        found = await _first_pages(client, candidates, priority)
    except PostmanError as exc:
        raise _unknown(what, lost, f"reading a candidate batch failed ({exc})") from exc
    return batch_verdict(sent, found)


async def _first_pages(
    client: PostmanClient, candidates: tuple[BatchCandidate, ...], priority: Priority | None
) -> list[tuple[BatchCandidate, Page]]:
    found = []
    for candidate in candidates:
        request = list_batch_messages_request(client.campaign_id, candidate.batch_id, limit=1000)
        raw = await client._send(request, priority, _page)
        found.append((candidate, raw.value))
    return found


async def refuse_if_uploaded(
    client: PostmanClient,
    sent: SentBatch,
    window: timedelta,
    priority: Priority | None,
    *,
    what: str,
    part: int,
    mine: Container[str],
) -> None:
    """The duplicate-upload guard: raise :class:`DuplicateUploadError` if a batch holding
    this file was created within ``window`` (batches in ``mine``, this upload's own parts,
    excepted). One search and one page per candidate batch: 2 calls in the common case."""

    def since(date: str | None) -> datetime | None:
        read_at = parse_http_date(date)
        return read_at - window if read_at is not None else None

    search = await search_recipient(
        client, sent.probe, priority, since, page_size=GUARD_PAGE_SIZE, max_pages=GUARD_MAX_PAGES
    )
    later = "send it anyway with guard_window=None (--again on the command line)"
    if not search.complete:
        raise DuplicateUploadError(
            f"{what}: could not check for an earlier upload: its first recipient has more "
            f"than {GUARD_PAGE_SIZE * GUARD_MAX_PAGES:,} messages within {_span(window)}; "
            f"it was not sent; {later}",
            batch_id=None,
            part=part,
        )
    candidates = batch_candidates(sent, search.messages, not_before=search.not_before, known=mine)
    ids = tuple(c.batch_id for c in candidates)
    if len(candidates) > MAX_GUARD_CANDIDATES:
        raise DuplicateUploadError(
            f"{what}: {len(ids)} batches within {_span(window)} could hold it "
            f"({', '.join(ids)}); it was not sent; {later}",
            batch_id=None,
            part=part,
            candidates=ids,
        )
    existing = existing_batches(sent, await _first_pages(client, candidates, priority))
    if existing:
        newest = existing[0]
        raise DuplicateUploadError(
            f"{what} was already uploaded: batch {newest.batch_id}, created "
            f"{_when(newest.created_at)} (within {_span(window)}); it was not sent again; "
            f"{later}",
            batch_id=newest.batch_id,
            created_at=newest.created_at,
            part=part,
            candidates=tuple(e.batch_id for e in existing),
        )


def _span(window: timedelta) -> str:
    seconds = window.total_seconds()
    if seconds % 3600 == 0:
        return f"the last {seconds / 3600:g} h"
    return f"the last {seconds:g} s"


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "at an unknown time"
    return f"at {moment.astimezone().strftime('%Y-%m-%d %H:%M:%S %z')}"
