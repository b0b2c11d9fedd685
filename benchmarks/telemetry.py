"""Telemetry cost: the SDK's client CPU per request in three set-ups, each in its own process
(providers are process-wide), against the same simulator process:

- ``off``: opentelemetry not importable (the extra not installed);
- ``api``: opentelemetry-api installed, no SDK configured (its no-op tracer and meter);
- ``sdk``: the OpenTelemetry SDK configured as a service would (a BatchSpanProcessor
  exporting to memory, a meter provider with a reader).

Target: telemetry under 5% of the client's cost.

    python -m benchmarks.telemetry [--requests 5000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from typing import Any

from ._common import simulator_process, table

CHILD = """
import asyncio, json, sys, time
from postman_async import PostmanClient
base, campaign, key, message_id, requests, otel = sys.argv[1:7]
if otel == "off":
    sys.modules["opentelemetry"] = None
elif otel == "sdk":
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[InMemoryMetricReader()]))
async def main():
    async with PostmanClient(api_key=key, campaign_id=campaign, base_url=base,
                             rate_limit=1_000_000) as client:
        n = int(requests)
        async def batch():
            remaining = iter(range(n))
            async def worker():
                for _ in remaining:
                    await client.get_message(message_id)
            await asyncio.gather(*(worker() for _ in range(20)))
        await batch()  # warm-up
        cpu = time.process_time()
        await batch()
        print(json.dumps({"us_per_request": (time.process_time() - cpu) / n * 1e6}))
asyncio.run(main())
"""


def _one(args: list[str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return float(json.loads(out.stdout)["us_per_request"])


async def _message_id(base: str, campaign: str, key: str) -> str:
    import aiohttp

    headers = {"Authorization": f"Bearer {key}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        url = f"{base}/campaigns/{campaign}/messages"
        async with session.get(url, params={"limit": "1"}) as resp:
            return str((await resp.json())["data"][0]["id"])


def run(requests: int = 5000, rounds: int = 3) -> dict[str, Any]:
    modes = ("off", "api", "sdk")
    seen: dict[str, list[float]] = {mode: [] for mode in modes}
    with simulator_process("--rate-limit", "1000000", "--failed-messages", "1") as (
        base,
        campaign,
        key,
    ):
        message_id = asyncio.run(_message_id(base, campaign, key))
        for _ in range(rounds):  # interleaved, so machine noise hits every mode alike
            for mode in modes:
                seen[mode].append(_one([base, campaign, key, message_id, str(requests), mode]))
    best = {mode: min(values) for mode, values in seen.items()}
    return {
        "requests": requests,
        "rounds": rounds,
        **{f"{mode}_us_per_request": round(best[mode], 1) for mode in modes},
        "api_overhead": f"{(best['api'] / best['off'] - 1) * 100:.1f}%",
        "sdk_overhead": f"{(best['sdk'] / best['off'] - 1) * 100:.1f}%",
        **{f"all_{mode}_us": [round(x, 1) for x in seen[mode]] for mode in modes},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(table(list(run(args.requests, args.rounds).items())))


if __name__ == "__main__":
    main()
