"""The ``postman-async`` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence

from .testing.simulator import Faults, PostmanSimulator, campaign_summary


def _simulator_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("simulator", help="run the Postman v2 simulator standalone")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--rate-limit", type=float, default=10.0, help="calls/s per campaign")
    p.add_argument(
        "--rate-limit-mode", choices=("sliding", "fixed", "token_bucket"), default="sliding"
    )
    p.add_argument("--no-retry-after", action="store_true", help="omit Retry-After on 429")
    p.add_argument("--time-scale", type=float, default=1.0, help="message lifecycle speed-up")
    p.add_argument("--failure-rate", type=float, default=0.0)
    p.add_argument("--max-attempts", type=int, default=3)
    p.add_argument("--max-batch-rows", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--server-error-rate", type=float, default=0.0)
    p.add_argument("--latency", type=float, default=0.0)


async def _run_simulator(args: argparse.Namespace) -> int:
    sim = PostmanSimulator(
        host=args.host,
        port=args.port,
        rate_limit=args.rate_limit,
        rate_limit_mode=args.rate_limit_mode,
        retry_after_header=not args.no_retry_after,
        time_scale=args.time_scale,
        failure_rate=args.failure_rate,
        max_attempts=args.max_attempts,
        max_batch_rows=args.max_batch_rows,
        seed=args.seed,
        faults=Faults(server_error_rate=args.server_error_rate, latency=args.latency),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    async with sim:
        print(campaign_summary(sim), flush=True)
        await stop.wait()
    print("simulator stopped", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="postman-async", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _simulator_parser(sub)
    args = parser.parse_args(argv)
    try:
        if args.command == "simulator":
            return asyncio.run(_run_simulator(args))
    except OSError as exc:
        print(f"postman-async: {exc}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")
    return 2
