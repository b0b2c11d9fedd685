"""What the journal's guarantee needs from Redis, checked at start-up.

No POST goes out before its intent is written; after a crash, the intent is what stops a
second POST. An intent that Redis loses (a restart without persistence, an eviction, a
failover to a replica that had not received it) reopens the door to a double send. So:

- ``appendonly yes`` with ``appendfsync always``: an acknowledged write is on disk (``everysec``
  can lose the last second of intents on a power loss or kill -9 of Redis);
- ``maxmemory-policy noeviction``: Redis refuses writes when full instead of dropping keys;
- with replicas and failover, the intent must reach a replica before the POST (``WAIT``;
  ``WAITAOF`` on Redis >= 7.2): pass ``replicas`` to the workers.
"""

from __future__ import annotations

import logging

try:
    import redis.asyncio as aioredis
    from redis.exceptions import ResponseError
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('retry jobs need redis-py: pip install "postman-async[taskiq]"') from exc

logger = logging.getLogger("postman_async")


async def durability_warnings(redis: aioredis.Redis) -> list[str]:
    """What in this Redis's configuration weakens the no-double-POST guarantee (empty: none
    that can be seen; ``CONFIG`` disabled by the provider is reported as unknown)."""
    try:
        config = {
            k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
            for k, v in (
                await redis.config_get("appendonly", "appendfsync", "maxmemory-policy")
            ).items()
        }
    except ResponseError as exc:
        return [f"cannot read the Redis configuration ({exc}); check durability yourself"]
    warnings = []
    if config.get("appendonly") != "yes":
        warnings.append(
            "Redis persistence is off (appendonly no): a Redis restart loses the journal, "
            "and a crashed worker's POST could then be sent twice"
        )
    elif config.get("appendfsync") != "always":
        warnings.append(
            f"appendfsync is {config.get('appendfsync')!r}: an intent acknowledged in the "
            "last second can be lost if the Redis host crashes (use 'always')"
        )
    if config.get("maxmemory-policy", "noeviction") != "noeviction":
        warnings.append(
            f"maxmemory-policy is {config.get('maxmemory-policy')!r}: Redis may evict job "
            "keys; use 'noeviction'"
        )
    return warnings


async def warn_if_not_durable(redis: aioredis.Redis) -> list[str]:
    warnings = await durability_warnings(redis)
    for warning in warnings:
        logger.warning("job journal durability: %s", warning)
    return warnings
