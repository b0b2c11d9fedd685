"""A job worker process: a taskiq receiver on the Redis Stream broker, plus the supervisor.

    POSTMAN_API_KEY=... POSTMAN_ASYNC_REDIS_URL=redis://... python -m postman_async.jobs.worker

(``postman-async job worker`` is the same.) One process is one worker; run N of them on any
number of hosts. SIGTERM or Ctrl-C: stop taking tasks, finish the ones running, exit; a task
cut short by a kill is safe, its chunk's lease lapses and another worker settles it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from .durability import warn_if_not_durable
from .supervisor import supervise_once
from .taskiq_app import broker, kick, set_worker_context, worker_context

try:
    from taskiq.receiver import Receiver
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('retry jobs need taskiq: pip install "postman-async[taskiq]"') from exc

logger = logging.getLogger("postman_async")


async def serve(
    *, concurrency: int = 16, supervise_every: float = 5.0, stop: asyncio.Event
) -> None:
    """Take chunk tasks until ``stop`` is set; every ``supervise_every`` s, re-kick stalled
    chunks of every active job. A broken Redis connection restarts the receiver."""
    context = worker_context()
    await warn_if_not_durable(context.redis)
    broker.is_worker_process = True
    supervisor = asyncio.ensure_future(_supervise(context.redis, supervise_every, stop))
    try:
        while not stop.is_set():
            receiver = Receiver(broker, max_async_tasks=concurrency, propagate_exceptions=False)
            try:
                await receiver.listen(stop)
            except Exception as exc:  # Redis restarted or unreachable: start over
                logger.warning("worker: broker connection lost (%s); reconnecting", exc)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor
        await broker.shutdown()
        await context.aclose()
        set_worker_context(None)


async def _supervise(redis: object, every: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await supervise_once(redis, kick)  # type: ignore[arg-type]
        except Exception as exc:  # Redis down: the next round tries again
            logger.warning("supervisor: %s", exc)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="postman-async job worker", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=16, help="chunks run at once")
    parser.add_argument("--supervise-every", type=float, default=5.0, help="seconds")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("taskiq").setLevel(logging.WARNING)  # a line per task is noise
    return run(args.concurrency, args.supervise_every)


def run(concurrency: int, supervise_every: float) -> int:
    async def go() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await serve(concurrency=concurrency, supervise_every=supervise_every, stop=stop)

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
