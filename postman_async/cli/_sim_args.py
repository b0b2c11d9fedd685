"""The standalone simulator's arguments (``postman-async simulator``)."""

from __future__ import annotations

import argparse

from ._parser import _count, _writable, non_negative, positive


def add_simulator_arguments(sim: argparse.ArgumentParser) -> None:
    """The server: where it listens, its rate limit, lifecycle and ASSUMPTION settings;
    then its faults and the test data it starts with."""
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=_count(0), default=8080)
    sim.add_argument(
        "--rate-limit",
        type=positive,
        default=None,
        help="calls/s per campaign (default 10; 200 with --load-test)",
    )
    sim.add_argument(
        "--load-test",
        action="store_true",
        help="behave as the load-test environment: messages stop at the aggregator and stay "
        "pending (never success), 200 calls/s by default",
    )
    sim.add_argument(
        "--rate-limit-mode", choices=("sliding", "fixed", "token_bucket"), default="sliding"
    )
    sim.add_argument("--no-retry-after", action="store_true", help="omit Retry-After on 429")
    sim.add_argument("--time-scale", type=positive, default=1.0, help="lifecycle speed-up")
    sim.add_argument("--failure-rate", type=non_negative, default=0.0, help="0..1")
    sim.add_argument(
        "--max-attempts",
        type=_count(1),
        default=3,
        help="the server's attempt cap, original send included (the docs allow 3 or 4)",
    )
    sim.add_argument(
        "--retry-failure-rate",
        type=non_negative,
        default=None,
        help="share of retried failures that fail again (default: as --failure-rate)",
    )
    sim.add_argument("--max-batch-rows", type=_count(1), default=None)
    sim.add_argument("--seed", type=int, default=0)
    _faults_and_data(sim)


def _faults_and_data(sim: argparse.ArgumentParser) -> None:
    sim.add_argument("--server-error-rate", type=non_negative, default=0.0, help="0..1")
    sim.add_argument(
        "--competing-share",
        type=non_negative,
        default=0.0,
        help="share of each campaign's rate taken by a simulated competing client (0..1)",
    )
    sim.add_argument(
        "--latency-ms",
        type=non_negative,
        default=0.0,
        help="one-way network delay added to each request, in and out (ms)",
    )
    sim.add_argument(
        "--jitter-ms",
        type=non_negative,
        default=0.0,
        help="spread of that delay on top of --latency-ms (ms)",
    )
    sim.add_argument(
        "--jitter-dist",
        choices=("uniform", "lognormal"),
        default="uniform",
        help="uniform in [0, jitter], or lognormal (median jitter/2, heavy tail)",
    )
    sim.add_argument(
        "--retransmit-share",
        type=non_negative,
        default=0.0,
        help="share of legs (0..1) held back a further 200 ms, as a TCP retransmit would",
    )
    sim.add_argument("--latency", type=non_negative, default=0.0, help="seconds added per answer")
    sim.add_argument(
        "--failed-messages",
        type=_count(0),
        default=0,
        help="pre-create this many failed messages (to try retries on)",
    )
    sim.add_argument("--ids-out", type=_writable, default=None, help="write their IDs to this file")
