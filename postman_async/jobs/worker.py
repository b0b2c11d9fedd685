"""A job worker process: a taskiq receiver on the Redis Stream broker, plus the supervisor.

    POSTMAN_CAMPAIGN_ID=... POSTMAN_API_KEY=... POSTMAN_BASE_URL=... \\
    POSTMAN_ASYNC_REDIS_URL=redis://... python -m postman_async.jobs.worker

(``postman-async job worker`` is the same.) One process is one worker; run N of them on any
number of hosts. It serves the campaigns of its own configuration only
(:mod:`postman_async.jobs.config`). SIGTERM or Ctrl-C: stop taking tasks, finish the ones
running, exit; a task cut short by a kill is safe, its chunk's lease lapses and another
worker settles it. It logs at INFO on stderr: connected, chunks taken over, jobs finished,
refused or lost, Redis restarts, shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from typing import Any

from .. import _redact
from . import taskiq_app
from .config import WorkerConfig, WorkerConfigError
from .durability import warn_if_not_durable
from .supervisor import supervise_once
from .taskiq_app import WorkerContext, broker, kick, set_worker_context, worker_context

try:
    from redis.exceptions import RedisError
    from taskiq.receiver import Receiver
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('retry jobs need taskiq: pip install "postman-async[taskiq]"') from exc

logger = logging.getLogger("postman_async")


async def serve(
    *, concurrency: int = 16, supervise_every: float = 5.0, stop: asyncio.Event
) -> None:
    """Take chunk tasks until ``stop`` is set; every ``supervise_every`` s, re-kick stalled
    chunks of the jobs this worker serves and check the jobs it has run. A broken Redis
    connection restarts the receiver, and the durability settings are checked again."""
    context = worker_context()
    await warn_if_not_durable(context.redis)
    logger.info("worker %s: %s", context.owner, describe(context))
    broker.is_worker_process = True
    supervisor = asyncio.ensure_future(_supervise(context, supervise_every, stop))
    try:
        while not stop.is_set():
            receiver = Receiver(broker, max_async_tasks=concurrency, propagate_exceptions=False)
            try:
                await receiver.listen(stop)
            except Exception as exc:  # Redis restarted or unreachable: start over
                logger.warning("worker: broker connection lost (%s); reconnecting", exc)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                await _reconnect(context)
    finally:
        logger.info("worker %s: stopping (finishing the chunks in hand)", context.owner)
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor
        await broker.shutdown()
        await context.aclose()
        set_worker_context(None)
        logger.info("worker %s: stopped", context.owner)


def describe(context: WorkerContext) -> str:
    """What a worker serves, for its start-up line (no key, no Redis credentials)."""
    kwargs: Any = context.redis.connection_pool.connection_kwargs
    where = f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
    campaigns = ", ".join(
        f"{c.campaign_id} at {c.base_url}" for c in context.config.campaigns.values()
    )
    return f"connected to Redis {where}; serving {campaigns}"


async def _reconnect(context: WorkerContext) -> None:
    """After a lost connection: the stream's consumer group may be gone with Redis's data
    (a restart without AOF), so create it again; check durability and the jobs run so far."""
    with contextlib.suppress(Exception):
        await broker.startup()
    with contextlib.suppress(Exception):
        await warn_if_not_durable(context.redis)
        await context.check_known()


async def _supervise(context: WorkerContext, every: float, stop: asyncio.Event) -> None:
    run_id = None
    while not stop.is_set():
        try:
            now_id = (await context.redis.info("server")).get("run_id")
            if run_id is not None and now_id != run_id:
                logger.warning("worker: Redis restarted (a new run id); checking its data")
                await _reconnect(context)
            run_id = now_id
            await context.check_known()
            await supervise_once(
                context.redis,
                kick,
                serves=frozenset(context.config.campaigns),
            )
        except Exception as exc:  # Redis down: the next round tries again
            logger.warning("supervisor: %s", exc)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="postman-async job worker", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=16, help="chunks run at once")
    parser.add_argument("--supervise-every", type=float, default=5.0, help="seconds")
    parser.add_argument("--campaigns-file", help="JSON file of the campaigns served")
    args = parser.parse_args(argv)
    return run(args.concurrency, args.supervise_every, args.campaigns_file)


def run(concurrency: int, supervise_every: float, campaigns_file: str | None = None) -> int:
    """Run a worker until SIGTERM or Ctrl-C; 2 when its configuration is missing or bad."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("taskiq").setLevel(logging.WARNING)  # a line per task is noise
    try:
        config = WorkerConfig.from_env(campaigns_file=campaigns_file)
    except WorkerConfigError as exc:
        logger.error("worker: %s", exc)
        return 2

    async def go() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_quiet_connection_errors)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        context = worker_context(config)  # this process's context, from its configuration
        try:
            await context.redis.ping()
        except RedisError as exc:
            where = _redact.redact_url(taskiq_app.REDIS_URL)
            logger.error(
                "worker: cannot reach Redis at %s (%s)", where, _redact.redact_text(str(exc))
            )
            await context.aclose()
            set_worker_context(None)
            return 8
        await serve(concurrency=concurrency, supervise_every=supervise_every, stop=stop)
        return 0

    return asyncio.run(go())


def _quiet_connection_errors(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """taskiq acknowledges a delivery in a task of its own; while Redis is down that task
    fails with nobody to await it. One line for that, the default handler for the rest."""
    exc = context.get("exception")
    if isinstance(exc, (RedisError, OSError)):
        logger.warning("worker: Redis unavailable (%s: %s)", type(exc).__name__, exc)
        return
    loop.default_exception_handler(context)


if __name__ == "__main__":
    raise SystemExit(main())
