"""The orchestrator's I/O: reads and POSTs in the BULK lane, paced by the budget share.

The loops that carry out plans (``_fanout``, ``_polling``, ``_batches``, ``_settle``) share one
:class:`Executor` per orchestrator; all run state lives in per-run objects, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from typing import Any

import attrs

from .client import PostmanClient
from .environments import AGGREGATOR_PENDING
from .errors import (
    AuthenticationError,
    IpNotAllowedError,
    PermissionDeniedError,
    RateLimiterUnavailableError,
    RetryBudgetExhaustedError,
)
from .models import MessageStatus, Priority
from .planner import PageMap
from .policy import CallMeter
from .ratelimit import Clock, Limiter, Sleep
from .reports import MessageState
from .rules import NOT_WORTH_RETRYING, AttemptCap

#: Errors that every further call would repeat: the run stops instead of spending the budget.
FATAL_ERRORS = (
    AuthenticationError,
    IpNotAllowedError,
    PermissionDeniedError,
    RetryBudgetExhaustedError,
    RateLimiterUnavailableError,
)


@attrs.define
class Executor:
    """One orchestrator's settings and I/O primitives."""

    client: PostmanClient
    cap: AttemptCap
    priority: Priority
    concurrency: int
    keep_messages: bool
    diagnose_skips: bool
    not_worth: frozenset[str]
    poll_interval: float
    max_poll_interval: float
    telco_final_after: float
    clock: Clock
    sleep: Sleep
    pacer: Limiter | None = None
    #: the load-test environment: messages stay pending at the aggregator for good
    statuses_stay_pending: bool = False

    @classmethod
    def for_client(
        cls,
        client: PostmanClient,
        *,
        cap: AttemptCap | None = None,
        priority: Priority = Priority.BULK,
        concurrency: int = 16,
        keep_messages: bool = True,
        diagnose_skips: bool = True,
        not_worth: Iterable[str] = NOT_WORTH_RETRYING,
        poll_interval: float = 2.0,
        max_poll_interval: float = 30.0,
        telco_final_after: float = 0.0,
        clock: Clock,
        sleep: Sleep,
        pacer: Limiter | None = None,
    ) -> Executor:
        """The one way executors are built (the orchestrator's and the jobs'): the defaults
        here, the attempt cap and the environment's rules from ``client``."""
        return cls(
            client=client,
            cap=client.attempt_cap if cap is None else cap,
            priority=priority,
            concurrency=concurrency,
            keep_messages=keep_messages,
            diagnose_skips=diagnose_skips,
            not_worth=frozenset(not_worth),
            poll_interval=poll_interval,
            max_poll_interval=max_poll_interval,
            telco_final_after=telco_final_after,
            clock=clock,
            sleep=sleep,
            pacer=pacer,
            statuses_stay_pending=client.environment.statuses_stay_pending,
        )

    def metered(self) -> tuple[Executor, CallMeter]:
        """A copy whose calls are counted by a new meter (and by the meters already on it)."""
        meter = CallMeter()
        return attrs.evolve(self, client=self.client.with_options(meter=meter)), meter

    def parked(self, status: MessageStatus | None) -> bool:
        """Pending for good: at the aggregator, in the load-test environment."""
        return self.statuses_stay_pending and status in AGGREGATOR_PENDING

    async def pace(self) -> None:
        """Headroom for other work on the campaign: our calls also pass a limiter of our own
        at ``budget_share`` of the campaign's rate."""
        if self.pacer is not None:
            grant = await self.pacer.acquire()
            if grant is not None:  # a share, not the budget's guard: spacing is all it is for
                grant.answered()

    async def read_batch(self, batch_id: str) -> list[MessageState]:
        """Every message of a batch, 1,000 per listing call."""
        states: list[MessageState] = []
        pages = self.client.list_batch_messages(batch_id, page_size=1000, priority=self.priority)
        async for page in pages.pages(before_each=self.pace):
            states.extend(MessageState.of(m, batch_id) for m in page.data)
        return states

    async def scan_batch(
        self, batch_id: str, is_final: Callable[[MessageState], bool]
    ) -> tuple[list[MessageState], PageMap | None]:
        """A poll's read of a batch: pages until one holds no final message. Listings are
        newest first and a batch's messages are created together, so the pages after such a
        page have not moved on either: reading them now would spend calls on nothing. Returns
        the states read and, when the whole batch was read, its page map."""
        states: list[MessageState] = []
        page_map: PageMap = []
        cursor: str | None = None
        pages = self.client.list_batch_messages(batch_id, page_size=1000, priority=self.priority)
        async with contextlib.aclosing(pages.pages(before_each=self.pace)) as reading:
            async for page in reading:
                read = [MessageState.of(m, batch_id) for m in page.data]
                states.extend(read)
                page_map.append((cursor, frozenset(s.message_id for s in read)))
                cursor = page.next_cursor
                if read and cursor and not any(is_final(s) for s in read):
                    return states, None
        return states, page_map

    async def read_pages(self, batch_id: str, cursors: Iterable[str | None]) -> list[MessageState]:
        """Some pages of a batch listing, each by the cursor that fetched it before."""
        pages = self.client.list_batch_messages(batch_id, page_size=1000, priority=self.priority)
        states: list[MessageState] = []
        for cursor in cursors:
            await self.pace()
            page = await pages.fetch(after=cursor)
            states.extend(MessageState.of(m, batch_id) for m in page.data)
        return states

    async def read_message(self, message_id: str, batch_id: str | None = None) -> MessageState:
        await self.pace()
        message = await self.client.get_message(message_id, priority=self.priority)
        return MessageState.of(message, batch_id)


async def aiter_any(source: Iterable[Any] | AsyncIterable[Any]) -> AsyncIterator[Any]:
    if isinstance(source, AsyncIterable):
        async for item in source:
            yield item
    else:
        for item in source:
            yield item


async def run_workers(worker: Callable[[], Any], count: int) -> None:
    """Run ``count`` copies of ``worker``; on any failure or cancellation, cancel the rest
    and wait for them, so no task outlives the call."""
    tasks = [asyncio.ensure_future(worker()) for _ in range(count)]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
