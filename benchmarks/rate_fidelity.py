"""Rate fidelity: the client at its default 10/s against the simulator's strict sliding-window
limiter (in its own process, as a real server is), driven by 50 concurrent callers.
Targets: max <= 10 in any sliding second, achieved >= 9.8/s, zero 429s.

    python -m benchmarks.rate_fidelity --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from postman_async import PostmanClient

from ._common import sim_stats, simulator_process, table


async def run(seconds: float = 30.0, rate: float = 10.0, workers: int = 50) -> dict[str, Any]:
    """Figures; ``result["times"]`` holds the server-side arrival times (for the rate plot)."""
    with simulator_process("--rate-limit", str(rate)) as (base, campaign, key):
        async with PostmanClient(
            api_key=key, campaign_id=campaign, base_url=base, rate_limit=rate
        ) as client:
            started = time.monotonic()
            deadline = started + seconds

            async def caller() -> None:
                while time.monotonic() < deadline:
                    await client.list_messages(page_size=1).fetch()

            await asyncio.gather(*(caller() for _ in range(workers)))
        stats = await sim_stats(base, campaign, times=True)
    times = stats["times"]
    achieved = (len(times) - 1) / (times[-1] - times[0])
    result = {
        "requests": len(times),
        "seconds": round(times[-1] - times[0], 2),
        "achieved_rate": round(achieved, 3),
        "max_in_sliding_second": stats["maxPerSecond"],
        "throttled_429": stats["throttled"],
    }
    print(
        f"rate fidelity at {rate:g}/s, {workers} callers, {seconds:g} s, simulator in its "
        "own process"
    )
    print(table(list(result.items())), flush=True)
    return {**result, "times": [t - times[0] for t in times]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args()
    asyncio.run(run(args.seconds, args.rate))


if __name__ == "__main__":
    main()
