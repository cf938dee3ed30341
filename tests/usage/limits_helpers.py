"""Shared helpers for the limits tests: concurrent requests against a live gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from decimal import Decimal

import aiohttp
from django.db.models import Sum

from usage.models import UsageRecord

BODY = {"model": "sim-eco", "messages": [{"role": "user", "content": "count me"}], "max_tokens": 20}


async def fire(
    url: str, key: str, bodies: Iterable[dict], concurrency: int = 200
) -> list[tuple[int, dict, bytes]]:
    """POST every body at once (up to `concurrency` in flight); (status, headers, body) each."""
    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: dict):
            async with (
                semaphore,
                session.post(
                    f"{url}/v1/chat/completions",
                    json=body,
                    headers={"Authorization": f"Bearer {key}"},
                    timeout=aiohttp.ClientTimeout(total=60),
                ) as response,
            ):
                return response.status, dict(response.headers), await response.read()

        return await asyncio.gather(*(one(b) for b in bodies))


def run(coro):
    return asyncio.run(coro)


def recorded_spend(**filters) -> Decimal:
    return UsageRecord.objects.filter(**filters).aggregate(t=Sum("cost_usd"))["t"] or Decimal(0)


def unthrottled(world) -> None:
    """Lift the tenant's rate limits (the plan rows are this test's own data)."""
    plan = world.tenant.plan
    plan.requests_per_minute = plan.requests_per_hour = plan.requests_per_day = None
    plan.tokens_per_minute = None
    plan.save()
    world.gateway.sync()
