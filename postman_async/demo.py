"""The demo: the whole mission against the bundled simulator, with no API key.

Sends a batch (with some documented failing test numbers and a random failure rate) and a few
single sends, waits for delivery outcomes, retries what failed (batch retry when it covers the
failures, single retries otherwise) until settled, and reports what the server saw.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Any

import attrs

from .client import PostmanClient
from .models import MessageStatus
from .orchestrator import RetryOrchestrator
from .reports import SettleProgress, SettleReport
from .testing.simulator import PostmanSimulator, SimulatorStats

#: Documented test numbers mixed into the demo batch (one each per 100 messages).
DEMO_FAILING_NUMBERS = ("6511111111", "6511113333", "6511112222", "6522222222")


@attrs.define
class DemoOptions:
    messages: int = 300
    singles: int = 10
    rate: float = 10.0
    failure_rate: float = 0.1
    seed: int = 1
    time_scale: float = 1.0
    poll_interval: float = 1.0
    timeout: float = 300.0


@attrs.define
class DemoResult:
    settle: SettleReport
    stats: SimulatorStats
    simulator: PostmanSimulator
    client_calls: int
    elapsed: float

    def summary(self) -> dict[str, Any]:
        delivered = self.settle.delivered
        return {
            "messages": len(self.settle.states),
            "delivered": delivered,
            "failed_for_good": dict(self.settle.failed_for_good),
            "unsettled": len(self.settle.unsettled),
            "rounds": len(self.settle.rounds),
            "calls_spent": self.client_calls,
            "calls_by_purpose": {
                "sends": self.client_calls - self.settle.calls,
                **self.settle.calls_by_purpose(),
            },
            "calls_per_delivered_message": round(self.client_calls / delivered, 3)
            if delivered
            else None,
            "server_requests": self.stats.requests,
            "max_calls_in_any_second": self.stats.max_per_second,
            "throttled_429": self.stats.throttled,
            "elapsed_seconds": round(self.elapsed, 1),
        }


def demo_rows(options: DemoOptions) -> list[dict[str, str]]:
    rng = random.Random(options.seed)
    rows = []
    for index in range(options.messages):
        if index % 100 < len(DEMO_FAILING_NUMBERS):
            recipient = DEMO_FAILING_NUMBERS[index % 100]
        else:
            recipient = f"65{rng.choice('89')}{rng.randrange(10**7):07d}"
        rows.append(
            {"recipient": recipient, "language": "english", "body": f"Your appointment #{index}"}
        )
    return rows


async def run_demo(
    options: DemoOptions, on_tick: Callable[[PostmanSimulator, str], None] | None = None
) -> DemoResult:
    started = time.monotonic()
    sim = PostmanSimulator(
        rate_limit=options.rate,
        time_scale=options.time_scale,
        failure_rate=options.failure_rate,
        seed=options.seed,
    )
    phase = ["starting"]

    async def ticker() -> None:
        while True:
            if on_tick is not None:
                on_tick(sim, phase[0])
            await asyncio.sleep(0.25)

    async with sim:
        tick = asyncio.ensure_future(ticker())
        try:
            async with PostmanClient(
                api_key=sim.api_key,
                campaign_id=sim.campaign_id,
                base_url=sim.base_url,
                rate_limit=options.rate,
            ) as client:
                phase[0] = "sending"
                batch = await client.send_batch(demo_rows(options))
                singles = [
                    (
                        await client.send_message(
                            f"659{index:07d}", "english", {"body": f"OTP {index:06d}"}
                        )
                    ).id
                    for index in range(options.singles)
                ]
                phase[0] = "settling"
                orchestrator = RetryOrchestrator(
                    client, poll_interval=options.poll_interval, max_poll_interval=5.0
                )

                def show(progress: SettleProgress) -> None:
                    phase[0] = f"round {progress.round}: {progress.phase.value.replace('_', ' ')}"

                settle = await orchestrator.retry_until_settled(
                    singles, batch_ids=[batch.batch_id], timeout=options.timeout, on_progress=show
                )
                calls = client.calls
            phase[0] = "done"
        finally:
            tick.cancel()
            await asyncio.gather(tick, return_exceptions=True)
        if on_tick is not None:
            on_tick(sim, "done")
    return DemoResult(settle, sim.stats(), sim, calls, time.monotonic() - started)


def progress_line(sim: PostmanSimulator, phase: str, total: int = 0, rate: float = 0.0) -> str:
    """The demo's live line: phase, final of ``total``, and what the server saw: calls in
    all and in its last second (never above the budget), the most in any second, 429s. No
    ETA: how long delivery takes is the lifecycle's, not the client's."""
    statuses = [sim.message_status(i) for i in list(sim.messages)]
    delivered = sum(1 for s in statuses if s == MessageStatus.SUCCESS)
    failed = sum(1 for s in statuses if s == MessageStatus.FAILURE)
    stats = sim.stats()
    now = sim.clock()
    last_second = sum(1 for t in sim.request_times() if t > now - 1.0)
    total = max(total, len(statuses))
    budget = f" of {rate:g}/s" if rate else ""
    return (
        f"[{phase}] {delivered + failed}/{total} final  delivered {delivered}  failed now "
        f"{failed}  calls {stats.requests} ({last_second} in the last second{budget})  "
        f"max/s {stats.max_per_second}  429s {stats.throttled}"
    )
