"""Lost retry answers decided by reading back, without a known attempt count: how many come
out "outcome unknown", and whether every decision matches the server's ground truth.

The simulator processes every retry POST and then loses its answer (a reset after
processing, or a timeout: the answer comes 0.5 s late and the client waits 0.2 s). The
orchestrator retries, with no attempt count known beforehand:

- ``failed``: messages in ``failure`` with one attempt (each retry takes);
- ``at_cap``: messages in ``failure`` with 3 attempts, the server's cap (each is refused);
- ``delivered``: messages already delivered (each is refused).

Each lost answer costs one GET (2 calls per message). The figures: results per outcome,
"outcome unknown" (``applied`` None), and decisions that contradict the server's record of
accepted retries.

    python -m benchmarks.retry_readback [--messages 100] [--old-rule]

``--old-rule`` decides with the previous rule (``protocol.retry_applied``: an attempt must be
a whole ``Date`` second plus 0.5 s after the POST's earliest time to count).
"""

from __future__ import annotations

import argparse
import asyncio
from collections import Counter
from typing import Any

from postman_async import PostmanClient, RetryOrchestrator
from postman_async.testing import Faults, PostmanSimulator

from ._common import table

FAULTS = {
    "reset after processing": (Faults(reset_after_rate=1.0, only_methods=("POST",)), 30.0),
    "timeout after processing": (Faults(latency=0.5, only_methods=("POST",)), 0.2),
}


def _use_old_rule() -> None:
    from postman_async import protocol, readback

    def verdict(message: Any, **kwargs: Any) -> Any:
        took = protocol.retry_applied(message, **kwargs)
        if took is None:
            return readback.Ambiguous((message,))
        return readback.Applied(message) if took else readback.NOT_APPLIED

    readback.retry_verdict = verdict  # type: ignore[assignment]


async def run(messages: int, fault: str) -> dict[str, Any]:
    faults, timeout = FAULTS[fault]
    failure = ("failure", "delivery_error", "recipient_unavailable")
    async with PostmanSimulator(rate_limit=1000, max_attempts=3) as sim:
        groups = {
            "failed": [sim.create_message(outcome=failure).id for _ in range(messages)],
            "at_cap": [sim.create_message(outcome=failure, attempts=3).id for _ in range(messages)],
            "delivered": [
                sim.create_message(outcome=("success", None, None)).id for _ in range(messages)
            ],
        }
        sim.faults = faults
        async with PostmanClient(
            api_key=sim.api_key,
            campaign_id=sim.campaign_id,
            base_url=sim.base_url,
            rate_limit=1000,
            timeout=timeout,
        ) as client:
            ids = [i for group in groups.values() for i in group]
            report = await RetryOrchestrator(client, max_attempts=3).retry_messages(ids)
        accepted = sim.posts.accepted_retries
    outcomes: dict[str, Counter[str]] = {}
    wrong = unknown = 0
    for name, group in groups.items():
        counts: Counter[str] = Counter()
        for message_id in group:
            result = report[message_id]
            label = "unknown" if result.applied is None else result.outcome.value
            counts[label] += 1
            unknown += result.applied is None
            took = accepted[message_id] > 0
            wrong += result.applied is not None and (result.applied is True) != took
        outcomes[name] = counts
    return {
        "fault": fault,
        "messages": len(ids),
        "outcome_unknown": unknown,
        "misjudged": wrong,
        "calls_per_message": round(report.calls / len(ids), 2),
        "outcomes": {k: dict(v) for k, v in outcomes.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100, help="per group")
    parser.add_argument("--old-rule", action="store_true", help="decide by the previous rule")
    args = parser.parse_args()
    if args.old_rule:
        _use_old_rule()
    for fault in FAULTS:
        figures = asyncio.run(run(args.messages, fault))
        rule = "previous rule, forced" if args.old_rule else "the installed rule"
        print(f"lost retry answers, {fault} ({rule}):")
        print(table([(k, v) for k, v in figures.items() if k != "fault"]))


if __name__ == "__main__":
    main()
