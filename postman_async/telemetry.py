"""OpenTelemetry, API only (``pip install "postman-async[otel]"``): the SDK creates spans and
metrics through ``opentelemetry-api`` and never configures an SDK or exporter; your
application does. Without the package, every hook here is a no-op that costs one ``if``.

Spans: ``postman.call`` per API call (all its HTTP attempts): ``http.request.method``,
``postman.endpoint`` (the route template, e.g. ``/campaigns/{id}/messages/{id}/retry``),
``postman.campaign``, ``http.response.status_code``, ``postman.attempts`` and
``postman.outcome`` (``ok`` or the error type). ``postman.retry_run`` per
``retry_messages`` and ``postman.settle`` per ``retry_until_settled``, with their counts.

Metrics (what HTTP instrumentation cannot see): ``postman.limiter.wait`` (histogram, ms, by
``postman.lane``; its count is the tokens granted), ``postman.throttled`` (429s),
``postman.retry_budget.withdrawals``, ``postman.outcome_unknown``, ``postman.job.results``
(by ``postman.outcome``), and the gauges ``postman.limiter.margin`` and
``postman.limiter.rate`` (the learned margin and the rate in force, per campaign limiter).

No recipient, message body or key is ever an attribute: endpoints are route templates.
"""

from __future__ import annotations

import contextlib
import re
import weakref
from collections.abc import Iterator
from typing import Any

from ._version import __version__

try:  # the optional "otel" extra
    from opentelemetry import metrics, trace
    from opentelemetry.trace import ProxyTracerProvider, Status, StatusCode
except ImportError:  # pragma: no cover - exercised by a test that hides the package
    trace = None  # type: ignore[assignment]
    metrics = None  # type: ignore[assignment]

ENABLED = trace is not None
_IDS = re.compile(r"/(campaigns|messages|batch|batches)/[^/?]+")
_limiters: weakref.WeakSet[Any] = weakref.WeakSet()


def route(path: str) -> str:
    """``/campaigns/c1/messages/m1/retry`` -> ``/campaigns/{id}/messages/{id}/retry``."""
    return _IDS.sub(lambda m: f"/{m.group(1)}/{{id}}", path)


def campaign_of(path: str) -> str | None:
    """The campaign ID in an API path."""
    match = re.match(r"/campaigns/([^/?]+)", path)
    return match.group(1) if match else None


def message_of(path: str) -> str | None:
    """The message ID in an API path (None for sends and listings)."""
    match = re.search(r"/messages/([^/?]+)", path)
    return match.group(1) if match else None


class _Instruments:
    def __init__(self) -> None:
        meter = metrics.get_meter("postman_async", __version__)
        self.wait = meter.create_histogram(
            "postman.limiter.wait", unit="ms", description="time waiting for a token"
        )
        self.throttled = meter.create_counter("postman.throttled", description="429 answers")
        self.withdrawals = meter.create_counter(
            "postman.retry_budget.withdrawals", description="HTTP retries paid from the budget"
        )
        self.unknown = meter.create_counter(
            "postman.outcome_unknown", description="POSTs whose outcome could not be told"
        )
        self.job_results = meter.create_counter(
            "postman.job.results", description="results written by retry-job workers"
        )
        meter.create_observable_gauge(
            "postman.limiter.margin", callbacks=[_observe("margin")], unit="1"
        )
        meter.create_observable_gauge(
            "postman.limiter.rate", callbacks=[_observe("current_rate")], unit="1/s"
        )


def _observe(attribute: str) -> Any:
    def callback(options: Any) -> Iterator[Any]:
        for limiter in list(_limiters):
            value = getattr(limiter, attribute, None)
            if isinstance(value, (int, float)):
                yield metrics.Observation(float(value), {"postman.limiter": type(limiter).__name__})

    return callback


_instruments: _Instruments | None = None
_tracer: tuple[Any, Any] | None = None  # (provider, its tracer)


def instruments() -> _Instruments | None:
    """The metric instruments, created on first use; None without the package, or while no
    meter provider is configured (then recording would only feed a no-op)."""
    global _instruments
    if not ENABLED or type(metrics.get_meter_provider()).__name__ == "_ProxyMeterProvider":
        return None
    if _instruments is None:
        _instruments = _Instruments()
    return _instruments


def tracer() -> Any:
    """The SDK's tracer, or None while no tracer provider is configured: a span on the
    API's no-op proxy costs about 15% of a call for nothing (``benchmarks/telemetry.py``)."""
    global _tracer
    if not ENABLED:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, ProxyTracerProvider):
        return None
    if _tracer is None or _tracer[0] is not provider:
        _tracer = (provider, provider.get_tracer("postman_async", __version__))
    return _tracer[1]


def watch_limiter(limiter: Any) -> None:
    """Report this limiter's margin and rate in force through the gauges."""
    if ENABLED:
        _limiters.add(limiter)


@contextlib.contextmanager
def call_span(method: str, path: str) -> Iterator[Any]:
    """A span for one API call (a no-op without the package or a configured provider)."""
    found = tracer()
    if found is None:
        yield None
        return
    attributes = {"http.request.method": method, "postman.endpoint": route(path)}
    campaign = campaign_of(path)
    if campaign:
        attributes["postman.campaign"] = campaign
    with found.start_as_current_span(
        "postman.call", kind=trace.SpanKind.CLIENT, attributes=attributes
    ) as span:
        yield span


def end_call(span: Any, *, status: int | None, attempts: int, error: BaseException | None) -> None:
    if span is None:
        return
    attributes: dict[str, Any] = {
        "postman.attempts": attempts,
        "postman.outcome": "ok" if error is None else type(error).__name__,
    }
    if status is not None:
        attributes["http.response.status_code"] = status
    span.set_attributes(attributes)  # one call: each takes the span's lock
    if error is not None:
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))


@contextlib.contextmanager
def run_span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span around an orchestrator run (``postman.retry_run``, ``postman.settle``...)."""
    found = tracer()
    if found is None:
        yield None
        return
    with found.start_as_current_span(name, attributes=attributes) as span:
        yield span


def add(name: str, value: float = 1, **attributes: Any) -> None:
    """Add to one of the counters, or record a wait (``wait``); a no-op without the package."""
    found = instruments()
    if found is None:
        return
    instrument = getattr(found, name)
    if name == "wait":
        instrument.record(value, attributes)
    else:
        instrument.add(value, attributes)
