"""A plain asyncio worker: consume failed message IDs from a queue and retry them.

The queue could be fed by a message broker; here ``retry_from_queue`` drains it until it
receives ``None`` and returns the orchestrator's report. Memory stays flat: the orchestrator
pulls IDs as it can spend the campaign's budget on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from postman_async import PostmanClient, RetryOrchestrator, RetryReport


async def ids_from(queue: asyncio.Queue[str | None]) -> AsyncIterator[str]:
    while (message_id := await queue.get()) is not None:
        yield message_id


async def retry_from_queue(client: PostmanClient, queue: asyncio.Queue[str | None]) -> RetryReport:
    orchestrator = RetryOrchestrator(client, keep_messages=False)
    return await orchestrator.retry_messages(ids_from(queue))
