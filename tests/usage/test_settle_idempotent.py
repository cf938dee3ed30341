"""A settle sent again (its reply was lost to a timeout or a dropped connection) counts once."""

from __future__ import annotations

import asyncio
import uuid

import redis
from django.conf import settings

from usage.limiter import Budget, Limiter, Plan
from usage.resp import RedisPipe


def test_a_settle_with_an_id_runs_once_however_often_it_is_sent():
    who = uuid.uuid4().hex
    spent, reserved = f"test:spend:{who}", f"test:resv:{who}"
    budget = Budget(spent, reserved, cap_units=10_000, is_hard=True, seed_ttl_ms=60_000)
    plan = Plan(rate_limits=[], request_cost=[], budgets=[budget], reserve_units=500)
    sync = redis.Redis.from_url(settings.REDIS_URL)
    sync.set(spent, 0)
    sync.set(reserved, 0)

    async def go() -> None:
        limiter = Limiter(RedisPipe(settings.REDIS_URL))
        try:
            assert (await limiter.admit(plan, 0)).status == 0
            call = Limiter.settle_call(
                plan, 0, actual_units=120, actual_tokens=0, credit_units=0, settle_id=who
            )
            for _ in range(3):
                await limiter.settle_many([call])
            other = Limiter.settle_call(plan, 0, actual_units=7, actual_tokens=0, credit_units=0)
            await limiter.settle_many([other])  # no id: each send counts (the old behaviour)
        finally:
            await limiter.redis.aclose()

    try:
        asyncio.run(go())
        assert int(sync.get(spent)) == 127
        assert int(sync.get(reserved)) == 0
    finally:
        sync.delete(spent, reserved, f"sy:settled:{who}")
