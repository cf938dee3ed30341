"""The gateway's limits step: rate limits, spending caps and credits for one request.

One Redis round trip admits the request (and reserves its maximum cost); one more, after
the response, settles it. When Redis cannot be reached, rate limits fail open and money
limits (hard caps, prepaid credits) fail closed, as configured; both are logged and counted.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import math
import os
import time
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

import redis
from django.conf import settings
from django.db import DatabaseError, InterfaceError, close_old_connections
from django.utils import timezone

from routing.gateway.errors import GatewayError
from routing.gateway.snapshot import CapInfo, PlanInfo, TenantInfo
from routing.router import ModelOption
from usage import counters, selectors
from usage.choices import KeySource
from usage.limiter import (
    ADMITTED,
    CAP_REACHED,
    NEEDS_SEED,
    NO_CREDITS,
    RATE_LIMITED,
    Admission,
    Budget,
    Credits,
    Limiter,
    Plan,
    RateLimit,
    SettleError,
    to_units,
)
from usage.metrics import LIMITS_UNAVAILABLE
from usage.money import quantize_usd
from usage.periods import period_bounds

logger = logging.getLogger(__name__)

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
# A counter seeded for a period lives a day past the period's end, then expires.
SEED_GRACE_MS = DAY
MAX_SEEDS = 6
SETTLE_BATCH_SECONDS = 0.005
SETTLE_ATTEMPTS = 3


@dataclass(slots=True)
class Reservation:
    plan: Plan
    estimated_tokens: int
    headers: list[tuple[bytes, bytes]]
    epoch: int = 0  # the Redis run it was made in (usage.resp.RedisPipe.epoch)


def _rate_limits(tenant: TenantInfo, key_id: int, key_rpm: int | None) -> list[RateLimit]:
    plan: PlanInfo = tenant.plan
    limits = []
    for name, period, value in (
        ("requests-minute", MINUTE, plan.requests_per_minute),
        ("requests-hour", HOUR, plan.requests_per_hour),
        ("requests-day", DAY, plan.requests_per_day),
    ):
        if value:
            limits.append(
                RateLimit(counters.rate_limit_key(tenant.id, name, value), period, value, name=name)
            )
    if key_rpm:
        limits.append(
            RateLimit(
                counters.api_key_rate_limit_key(key_id, key_rpm), MINUTE, key_rpm, name="key-minute"
            )
        )
    if plan.tokens_per_minute:
        limits.append(
            RateLimit(
                counters.rate_limit_key(tenant.id, "tokens-minute", plan.tokens_per_minute),
                MINUTE,
                plan.tokens_per_minute,
                is_tokens=True,
                name="tokens",
            )
        )
    return limits


def _budget(kind: str, who: str, period: date, cap: CapInfo, ttl_ms: int) -> Budget:
    spent_key, reserved_key = counters.budget_keys(kind, who, period)
    return Budget(
        spent_key=spent_key,
        reserved_key=reserved_key,
        cap_units=cap.amount_units,
        is_hard=cap.is_hard,
        seed_ttl_ms=ttl_ms,
        name=kind,
    )


def max_cost(
    option: ModelOption, prompt_tokens: int, max_tokens: int | None, choices: int = 1
) -> Decimal:
    """The most this attempt can cost: the estimated prompt plus every token it may write
    (`max_tokens` per choice: `n` choices may each write that many)."""
    output = (max_tokens or option.max_output_tokens) * choices
    return quantize_usd(
        (prompt_tokens * option.input_price + output * option.output_price) / Decimal(1_000_000)
    )


def credit_debit(cost: Decimal, source: int | None, plan: PlanInfo) -> Decimal:
    """What an attempt draws from credits: its cost on a platform key, the fee on BYOK."""
    if source == KeySource.PLATFORM:
        return cost
    return quantize_usd(cost * plan.platform_fee_percent / 100)


class Limits:
    def __init__(self) -> None:
        self.limiter = Limiter(counters.limits_client())
        self.rate_limits_fail_open = settings.SWITCHYARD_RATE_LIMITS_FAIL_OPEN
        self.caps_fail_closed = settings.SWITCHYARD_CAPS_FAIL_CLOSED
        # Settles wait here a few ms and go to Redis in one pipeline: a round trip after
        # every response cost ~0.3 ms of CPU each (py-spy under load, see README).
        self._settles: list[tuple[list[str], list[int]]] = []
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flushing: set[asyncio.Task] = set()
        # Counters being seeded, by key: after a Redis restart or at a new month every request
        # finds its counters missing at once, and each would sum the month's records again.
        self._seeding: dict[str, asyncio.Task] = {}

    async def close(self) -> None:
        await self.flush_settles()
        if self._flushing:
            await asyncio.wait(self._flushing, timeout=5)
        await self.limiter.redis.aclose()

    def plan_for(
        self,
        *,
        tenant: TenantInfo,
        key_id: int,
        key_rpm: int | None,
        end_user_external_id: str | None,
        chain: list[ModelOption],
        keys: dict,
        prompt_tokens: int,
        max_tokens: int | None,
        now_ms: int,
        choices: int = 1,
    ) -> tuple[Plan, dict[str, tuple]]:
        """The limits for this request and, per money counter, how to seed it."""
        rate_limits = _rate_limits(tenant, key_id, key_rpm)
        estimated_tokens = prompt_tokens + (max_tokens or 0) * choices
        costs = [1 if not r.is_tokens else estimated_tokens for r in rate_limits]
        budgets: list[Budget] = []
        seeds: dict[str, tuple] = {}
        caps = tenant.caps
        if caps.tenant or caps.each_user or caps.users:
            start, end = period_bounds(tenant.billing_day, timezone.now())
            ttl_ms = int((end.timestamp() * 1000) - now_ms) + SEED_GRACE_MS
            if caps.tenant:
                budget = _budget("t", str(tenant.id), start.date(), caps.tenant, ttl_ms)
                budgets.append(budget)
                seeds[budget.spent_key] = ("spend", budget, start, end, None)
            user_cap = caps.users.get(end_user_external_id) if end_user_external_id else None
            user_cap = user_cap or (caps.each_user if end_user_external_id else None)
            if user_cap:
                budget = _budget(
                    "u", f"{tenant.id}:{end_user_external_id}", start.date(), user_cap, ttl_ms
                )
                budgets.append(budget)
                seeds[budget.spent_key] = ("spend", budget, start, end, end_user_external_id)
        reserve = max(max_cost(o, prompt_tokens, max_tokens, choices) for o in chain)
        credits = None
        credit_units = 0
        if tenant.plan.prepaid:
            balance_key, reserved_key = counters.credit_keys(tenant.id)
            credits = Credits(balance_key, reserved_key, enforce=True)
            seeds[balance_key] = ("credits", reserved_key)
            credit_units = max(
                to_units(
                    credit_debit(
                        max_cost(o, prompt_tokens, max_tokens, choices),
                        keys[o.provider_id].source,
                        tenant.plan,
                    )
                )
                for o in chain
            )
        plan = Plan(rate_limits, costs, budgets, to_units(reserve), credits, credit_units)
        return plan, seeds

    async def admit(
        self, plan: Plan, seeds: dict[str, tuple], tenant: TenantInfo, estimated_tokens: int
    ) -> Reservation | None:
        """Admit or refuse (429 / 402); None when Redis is down and the request goes unmetered."""
        try:
            for _ in range(MAX_SEEDS):
                admission = await self.limiter.admit(plan, int(time.time() * 1000))
                if admission.status != NEEDS_SEED:
                    break
                try:
                    await self._seed(admission.seed_key, seeds, tenant)
                except (DatabaseError, InterfaceError) as exc:
                    self._unseeded(plan, admission.seed_key, tenant, exc)
            else:
                raise GatewayError(
                    503, "Limits could not be loaded; retry.", code="limits_unavailable"
                )
        except (redis.RedisError, OSError) as exc:
            return self._unavailable(plan, tenant, exc)
        headers = _headers(admission)
        if admission.status == RATE_LIMITED:
            limit = admission.rate_limits[admission.denied_index - 1]
            retry = max(1, math.ceil(admission.retry_after_ms / 1000))
            raise GatewayError(
                429,
                f"Rate limit reached ({limit.limit} {_unit(limit)} per "
                f"{_period_name(limit.period_ms)}). Retry after {retry} s.",
                code="rate_limit_exceeded",
                headers=[(b"retry-after", str(retry).encode()), *headers],
            )
        if admission.status == CAP_REACHED:
            budget = plan.budgets[admission.denied_index - 1]
            who = "this tenant's" if budget.name == "t" else "this end user's"
            raise GatewayError(
                402,
                f"The request could exceed {who} monthly spending cap; it was refused.",
                code="spending_cap_reached",
                headers=headers,
            )
        if admission.status == NO_CREDITS:
            raise GatewayError(
                402,
                "Not enough credits for this request. Add credits to continue.",
                code="insufficient_credits",
                headers=headers,
            )
        assert admission.status == ADMITTED  # noqa: S101 - the script returns nothing else
        return Reservation(plan, estimated_tokens, headers, self.limiter.epoch())

    def _unavailable(self, plan: Plan, tenant: TenantInfo, exc: Exception) -> None:
        guards_money = plan.credits is not None or any(b.is_hard for b in plan.budgets)
        LIMITS_UNAVAILABLE.labels(kind="admit").inc()
        logger.error("limits.redis_unavailable %s", repr(exc)[:300], extra={"tenant_id": tenant.id})
        if guards_money and self.caps_fail_closed:
            raise GatewayError(
                503,
                "Spending limits cannot be checked right now, so the request was refused. "
                "Retry shortly.",
                code="limits_unavailable",
            )
        if not self.rate_limits_fail_open:
            raise GatewayError(
                503, "Rate limits cannot be checked right now.", code="limits_unavailable"
            )
        return

    def _unseeded(self, plan: Plan, key: str, tenant: TenantInfo, exc: Exception) -> None:
        """A counter missing from Redis could not be read from the database (unreachable).

        A hard cap or credits fail closed, as when Redis is down (503); a soft cap only
        alerts, so the request goes on without that counter (its settle skips it too).
        """
        LIMITS_UNAVAILABLE.labels(kind="seed").inc()
        logger.error("limits.seed_failed %s", repr(exc)[:300], extra={"tenant_id": tenant.id})
        is_credits = plan.credits is not None and plan.credits.balance_key == key
        budget = next((b for b in plan.budgets if b.spent_key == key), None)
        if (is_credits or (budget is not None and budget.is_hard)) and self.caps_fail_closed:
            raise GatewayError(
                503,
                "Spending limits cannot be checked right now, so the request was refused. "
                "Retry shortly.",
                code="limits_unavailable",
            )
        if is_credits:
            plan.credits, plan.credit_units = None, 0
        else:
            plan.budgets = [b for b in plan.budgets if b.spent_key != key]

    async def _seed(self, key: str, seeds: dict[str, tuple], tenant: TenantInfo) -> None:
        """Seed the counter `key` from the database: one read per counter and process, however
        many requests are waiting for it (they share the one under way, and its failure)."""
        task = self._seeding.get(key)
        if task is None:
            # A context of its own: the seed is every waiting request's, not the first one's.
            task = asyncio.get_running_loop().create_task(
                self._seed_now(key, seeds, tenant), context=contextvars.Context()
            )
            self._seeding[key] = task
            task.add_done_callback(functools.partial(self._seeded, key))
        # Shielded: a client that leaves must not cancel the seed the others wait for.
        await asyncio.shield(task)

    def _seeded(self, key: str, task: asyncio.Task) -> None:
        if self._seeding.get(key) is task:
            del self._seeding[key]
        if not task.cancelled():
            # Marked retrieved: the waiters (if any are left) each handle it as it reaches them.
            task.exception()

    async def _seed_now(self, key: str, seeds: dict[str, tuple], tenant: TenantInfo) -> None:
        spec = seeds[key]
        if spec[0] == "spend":
            _, budget, start, end, external_id = spec
            amount = await asyncio.to_thread(
                _db,
                selectors.spent_between,
                tenant_id=tenant.id,
                start=start,
                end=end,
                end_user_external_id=external_id,
            )
            await self.limiter.seed(key, to_units(amount), budget.seed_ttl_ms, budget.reserved_key)
        else:
            amount = await asyncio.to_thread(_db, selectors.credit_balance, tenant_id=tenant.id)
            await self.limiter.seed(key, to_units(amount), None, spec[1])

    def settle_later(
        self, reservation: Reservation, *, cost: Decimal, tokens: int, debit: Decimal
    ) -> None:
        """Queue the replacement of the reservation by what the request cost."""
        keys, args = Limiter.settle_call(
            reservation.plan,
            int(time.time() * 1000),
            actual_units=to_units(cost),
            actual_tokens=tokens,
            credit_units=to_units(debit),
            settle_id=os.urandom(8).hex(),
        )
        self._settles.append((keys, args, reservation.epoch))
        if self._flush_handle is None:
            loop = asyncio.get_running_loop()
            # A context of its own: the batch is nobody's request (its logs name none).
            self._flush_handle = loop.call_later(
                SETTLE_BATCH_SECONDS, self._start_flush, context=contextvars.Context()
            )

    def _start_flush(self) -> None:
        self._flush_handle = None
        task = asyncio.get_running_loop().create_task(self.flush_settles())
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def flush_settles(self) -> None:
        batch, self._settles = self._settles, []
        for attempt in range(SETTLE_ATTEMPTS):
            if not batch:
                return
            try:
                batch = await self._current(batch)
                await self.limiter.settle_many([(keys, args) for keys, args, _ in batch])
                return
            except SettleError as exc:
                LIMITS_UNAVAILABLE.labels(kind="settle").inc()
                logger.error("limits.settle_failed", extra={"settles": len(exc.failed)})
                # Each keeps the run it was reserved in, so a restart meanwhile drops it.
                epochs = {id(keys): epoch for keys, _, epoch in batch}
                batch = [(keys, args, epochs[id(keys)]) for keys, args in exc.failed]
                await asyncio.sleep(0.2 * (attempt + 1))
            except (redis.RedisError, OSError):
                LIMITS_UNAVAILABLE.labels(kind="settle").inc()
                logger.error("limits.settle_failed", extra={"settles": len(batch)})
                await asyncio.sleep(0.2 * (attempt + 1))
        # Still failing: these reservations stay counted until their period's keys expire
        # (credit reservations until Redis loses them); logged and counted above.

    async def _current(self, batch: list[tuple]) -> list[tuple]:
        """Drop settles of reservations made before Redis restarted.

        A restarted Redis has lost those reservations, and its spend counters are seeded
        afresh from the database, which holds (or is about to hold) these requests' usage:
        applying them would count their cost twice.
        """
        epoch = await self.limiter.current_epoch()
        current = [call for call in batch if call[2] == epoch]
        if len(current) < len(batch):
            logger.warning(
                "limits.settles_dropped_after_redis_restart",
                extra={"settles": len(batch) - len(current)},
            )
        return current


def _db(fn, **kwargs):
    close_old_connections()
    try:
        return fn(**kwargs)
    finally:
        close_old_connections()


def _unit(limit: RateLimit) -> str:
    return "tokens" if limit.is_tokens else "requests"


def _period_name(ms: int) -> str:
    return {MINUTE: "minute", HOUR: "hour", DAY: "day"}.get(ms, f"{ms // 1000} s")


def _duration(ms: int) -> bytes:
    return f"{max(ms, 0) / 1000:.3f}s".encode()


def _headers(admission: Admission) -> list[tuple[bytes, bytes]]:
    """OpenAI's x-ratelimit-* headers: the tightest per-minute request limit and the TPM."""
    headers = []
    requests = [
        (limit, remaining, reset)
        for limit, remaining, reset in zip(
            admission.rate_limits, admission.remaining, admission.reset_ms, strict=False
        )
        if not limit.is_tokens and limit.period_ms == MINUTE
    ]
    if requests:
        limit, remaining, reset = min(requests, key=lambda row: row[1])
        headers += [
            (b"x-ratelimit-limit-requests", str(min(r[0].limit for r in requests)).encode()),
            (b"x-ratelimit-remaining-requests", str(max(remaining, 0)).encode()),
            (b"x-ratelimit-reset-requests", _duration(reset)),
        ]
    for limit, remaining, reset in zip(
        admission.rate_limits, admission.remaining, admission.reset_ms, strict=False
    ):
        if limit.is_tokens:
            headers += [
                (b"x-ratelimit-limit-tokens", str(limit.limit).encode()),
                (b"x-ratelimit-remaining-tokens", str(max(remaining, 0)).encode()),
                (b"x-ratelimit-reset-tokens", _duration(reset)),
            ]
    return headers
