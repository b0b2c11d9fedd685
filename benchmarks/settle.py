"""Settling a 10,000-message batch with 10% random failures: calls spent.

Our planner (``retry_until_settled`` with the batch id: bulk reads, one batch-retry POST per
round) runs at the real 10/s budget with an accelerated message lifecycle. The per-message
strategy on the same seeded input (GET every message until final, single-retry each failure,
repeat) runs at an accelerated rate only to count its calls; at 10/s it would take calls/10
seconds. Target: <= 60 calls to settle.

    python -m benchmarks.settle [--messages 10000]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from postman_async import MessageStatus, PostmanClient, RetryOrchestrator
from postman_async.errors import PostmanError
from postman_async.testing import PostmanSimulator

from ._common import table

LIFECYCLE_SPEEDUP = 10.0  # a 5 s delivery lifecycle takes 0.5 s


def _rows(messages: int) -> list[dict[str, str]]:
    return [
        {"recipient": f"6591{i:06d}", "language": "english", "body": f"Notice {i}"}
        for i in range(messages)
    ]


async def planned(messages: int, seed: int) -> dict[str, Any]:
    async with PostmanSimulator(
        rate_limit=10.0, time_scale=LIFECYCLE_SPEEDUP, failure_rate=0.1, seed=seed
    ) as sim:
        async with PostmanClient(
            api_key=sim.api_key, campaign_id=sim.campaign_id, base_url=sim.base_url
        ) as client:
            batch = await client.send_batch(_rows(messages))
            orchestrator = RetryOrchestrator(client, poll_interval=0.5, max_poll_interval=2.0)
            settle = await orchestrator.retry_until_settled(batch_ids=[batch.batch_id], timeout=600)
        stats = sim.stats()
    return {
        "messages": messages,
        "calls_to_settle": settle.calls,
        "calls_by_purpose": settle.calls_by_purpose(),
        "rounds": len(settle.rounds),
        "delivered": settle.delivered,
        "failed_for_good": sum(settle.failed_for_good.values()),
        "delivered_per_call": round(settle.delivered_per_call, 1),
        "elapsed_s": round(settle.elapsed, 1),
        "max_in_sliding_second": stats.max_per_second,
        "throttled_429": stats.throttled,
    }


async def per_message(messages: int, seed: int) -> dict[str, Any]:
    """The naive strategy: every message polled and retried on its own."""
    async with (
        PostmanSimulator(
            rate_limit=100_000.0, time_scale=LIFECYCLE_SPEEDUP, failure_rate=0.1, seed=seed
        ) as sim,
        PostmanClient(
            api_key=sim.api_key,
            campaign_id=sim.campaign_id,
            base_url=sim.base_url,
            rate_limit=100_000.0,
        ) as client,
    ):
        await client.send_batch(_rows(messages))
        ids = [m.id async for m in client.list_messages()]
        before = client.calls
        pending = set(ids)
        delivered = 0
        while pending:
            await asyncio.sleep(0.5)
            states = await asyncio.gather(*(client.get_message(i) for i in pending))
            for message in states:
                status = message.latest_status
                if status == MessageStatus.SUCCESS:
                    delivered += 1
                    pending.discard(message.id)
                elif status == MessageStatus.FAILURE:
                    try:
                        await client.retry_message(message.id)
                    except PostmanError:
                        pending.discard(message.id)  # out of attempts
        calls = client.calls - before
    return {
        "messages": messages,
        "calls_to_settle": calls,
        "delivered": delivered,
        "seconds_at_10_per_s": round(calls / 10),
    }


async def run(messages: int = 10_000, seed: int = 3) -> dict[str, Any]:
    ours = await planned(messages, seed)
    print(f"settle, planned per batch, real 10/s budget ({messages} messages, 10% failures)")
    print(table(list(ours.items())), flush=True)
    naive = await per_message(messages, seed)
    print("settle, per-message strategy on the same input (calls counted)")
    print(table(list(naive.items())), flush=True)
    return {"planned": ours, "per_message": naive}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.messages, args.seed))


if __name__ == "__main__":
    main()
