"""Where limit and money counters live: Redis, or an in-process fakeredis server when the
embedded default runs without one (single process, as the architecture's table says).

Both the gateway (async) and services (sync, e.g. a credit grant) reach the same counters.
"""

from __future__ import annotations

import functools
import logging
from decimal import Decimal

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

REDIS_POOL_SIZE = 64
REDIS_POOL_WAIT_SECONDS = 5.0


@functools.cache
def _fake_server():
    import fakeredis

    return fakeredis.FakeServer()


def async_client():
    """A new asyncio client for the counters (call once per event loop)."""
    if settings.REDIS_URL:
        import redis.asyncio as aioredis

        # A blocking pool: past its size a call waits for a connection instead of failing
        # (redis-py's default pool raises MaxConnectionsError under a burst). 64 connections
        # keep a 2-core Redis busy; more only queue inside Redis.
        pool = aioredis.BlockingConnectionPool.from_url(
            settings.REDIS_URL,
            max_connections=REDIS_POOL_SIZE,
            timeout=REDIS_POOL_WAIT_SECONDS,
            socket_timeout=2.0,
            socket_connect_timeout=1.0,
        )
        return aioredis.Redis(connection_pool=pool)
    import fakeredis

    return fakeredis.FakeAsyncRedis(server=_fake_server())


def limits_client():
    """The gateway's client for the limit scripts: one pipelined connection (usage.resp),
    or the in-process fakeredis of the embedded default."""
    if settings.REDIS_URL:
        from usage.resp import RedisPipe

        return RedisPipe(settings.REDIS_URL, timeout=2.0, connect_timeout=1.0)
    return async_client()


@functools.cache
def sync_client() -> redis.Redis:
    if settings.REDIS_URL:
        return redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=2.0, socket_connect_timeout=2.0
        )
    import fakeredis

    return fakeredis.FakeRedis(server=_fake_server())


def credit_keys(tenant_id: int) -> tuple[str, str]:
    return f"sy:credit:{tenant_id}", f"sy:credit_resv:{tenant_id}"


def adjust_credit_balance(*, tenant_id: int, amount_usd: Decimal) -> None:
    """Apply a ledger change to the live balance, if it is loaded (else the next request
    seeds it from the ledger, which already includes this change)."""
    from usage.limiter import to_units

    key, _ = credit_keys(tenant_id)
    script = (
        "if redis.call('EXISTS', KEYS[1]) == 1 then "
        "return redis.call('INCRBY', KEYS[1], ARGV[1]) end return 0"
    )
    try:
        sync_client().eval(script, 1, key, to_units(amount_usd))
    except redis.RedisError:
        # The next request re-seeds from the ledger once Redis answers; dropping the key
        # would race with a seed, so the failure is only reported.
        logger.warning("credits.live_balance_not_updated", extra={"tenant_id": tenant_id})


def rate_limit_key(tenant_id: int, name: str, limit: int) -> str:
    """GCRA state of one of a tenant's limits (`requests-minute`, `tokens-minute`, ...).

    The limit is part of the key: GCRA's state is a time measured in the old limit's units,
    so a plan change must start a fresh bucket, not inherit a full one.
    """
    return f"sy:rl:{tenant_id}:{name}:{limit}"


def api_key_rate_limit_key(key_id: int, limit: int) -> str:
    return f"sy:rl:k:{key_id}:requests-minute:{limit}"


def budget_keys(kind: str, who: str, period_start) -> tuple[str, str]:
    """(spent, reserved) counters of a monthly budget: kind "t" (tenant) or "u" (end user)."""
    suffix = f"{who}:{period_start:%Y%m%d}"
    return f"sy:spend:{kind}:{suffix}", f"sy:resv:{kind}:{suffix}"
