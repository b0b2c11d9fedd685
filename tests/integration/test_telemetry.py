"""OpenTelemetry through the API only: spans and metrics captured by the SDK's in-memory
exporters (configured here, as an application would), and nothing sensitive in them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import postman_async as pa
from postman_async.testing import PostmanSimulator

from ..helpers import client_for, fast_orchestrator

FAIL = (pa.MessageStatus.FAILURE, "delivery_error", "recipient_unavailable")
SPANS = InMemorySpanExporter()
READER = InMemoryMetricReader()


@pytest.fixture(scope="module", autouse=True)
def providers() -> None:
    """Global providers can be set once per process: the first test module to ask wins."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SPANS))
    trace.set_tracer_provider(provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    SPANS.clear()
    yield SPANS


def points(name: str) -> list[Any]:
    data = READER.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def all_attributes(exporter: InMemorySpanExporter) -> str:
    return " ".join(f"{s.name} {dict(s.attributes or {})}" for s in exporter.get_finished_spans())


async def test_a_send_is_one_span_with_no_recipient_body_or_key(make_sim, spans) -> None:
    sim: PostmanSimulator = await make_sim()
    async with client_for(sim) as client:
        await client.send_message("6591234567", "english", {"body": "secret OTP 4242"})
    (span,) = [s for s in spans.get_finished_spans() if s.name == "postman.call"]
    attributes = dict(span.attributes or {})
    assert attributes["http.request.method"] == "POST"
    assert attributes["postman.endpoint"] == "/campaigns/{id}/messages"
    assert attributes["postman.campaign"] == sim.campaign_id
    assert attributes["http.response.status_code"] == 201
    assert attributes["postman.attempts"] == 1 and attributes["postman.outcome"] == "ok"
    text = all_attributes(spans)
    assert "6591234567" not in text and "secret OTP" not in text and sim.api_key not in text
    waits = [p for p in points("postman.limiter.wait") if p.attributes["postman.lane"] == "high"]
    assert waits and waits[0].count >= 1
    assert any(p.value > 0 for p in points("postman.limiter.rate"))


async def test_a_429_shows_in_the_span_and_the_throttled_counter(make_sim, spans) -> None:
    sim: PostmanSimulator = await make_sim(rate_limit=1.0)
    message_id = sim.create_message("6591234567", outcome=FAIL).id
    before = sum(p.value for p in points("postman.throttled"))
    bursty = pa.RateLimiter(1000, margin=0.0)
    async with client_for(sim, limiter=bursty) as client:
        await client.get_message(message_id)
        strict = client.with_options(retry_policy=pa.RetryPolicy(retry_on_429=False))
        with pytest.raises(pa.TooManyRequestsError):
            await strict.get_message(message_id)
    failed = [s for s in spans.get_finished_spans() if s.status.status_code.name == "ERROR"]
    assert len(failed) == 1
    assert dict(failed[0].attributes or {})["http.response.status_code"] == 429
    assert dict(failed[0].attributes or {})["postman.outcome"] == "TooManyRequestsError"
    assert sum(p.value for p in points("postman.throttled")) == before + 1


async def test_an_orchestrator_run_is_a_span_over_its_calls(make_sim, spans) -> None:
    sim: PostmanSimulator = await make_sim()
    ids = [sim.create_message("6591234567", outcome=FAIL).id for _ in range(5)]
    async with client_for(sim) as client:
        await fast_orchestrator(client).retry_messages([*ids, ids[0]])
    finished = spans.get_finished_spans()
    (run,) = [s for s in finished if s.name == "postman.retry_run"]
    calls = [s for s in finished if s.name == "postman.call"]
    assert dict(run.attributes or {})["postman.ids"] == 5
    assert dict(run.attributes or {})["postman.outcome.retried"] == 5
    assert len(calls) == 5 and all(
        c.parent and c.parent.span_id == run.context.span_id for c in calls
    )
    assert all(
        dict(c.attributes or {})["postman.endpoint"] == "/campaigns/{id}/messages/{id}/retry"
        for c in calls
    )


def test_the_package_works_without_opentelemetry() -> None:
    code = """
import asyncio, sys
sys.modules["opentelemetry"] = None  # as if the extra were not installed
import postman_async as pa
from postman_async import telemetry
from postman_async.testing import PostmanSimulator
assert not telemetry.ENABLED
async def main():
    async with PostmanSimulator(rate_limit=1000) as sim:
        async with pa.PostmanClient(sim.api_key, sim.campaign_id, base_url=sim.base_url,
                                    rate_limit=1000) as client:
            message = await client.send_message("6591234567", "english", {"body": "hi"})
            assert message.id
asyncio.run(main())
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
