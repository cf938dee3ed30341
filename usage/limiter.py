"""Rate limits, spending-cap reservations and credit reservations: one Redis round trip each way.

Rate limits use GCRA (the generic cell rate algorithm): one timestamp per limit, no
per-request entries, a burst of up to `limit` and then a smooth rate, with an exact
Retry-After. Fixed windows allow twice the limit across a window edge and sliding logs cost
memory per request; GCRA has neither problem and needs a single GET/SET per limit.

Money is held in Redis as integer units of 1e-8 USD (the precision of UsageRecord.cost_usd),
so counters add up exactly. Before a request, `admit` checks every limit and, only if all
pass, reserves the request's maximum cost against each spending budget and credit balance;
`settle` replaces the reservation by the actual cost. A spending counter missing from Redis
(first use in a period, or Redis lost its data) is seeded from the database by the caller
before the request goes on, so a Redis restart never resets what a tenant has spent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import redis

from usage.resp import RedisPipe

logger = logging.getLogger(__name__)

UNITS_PER_USD = 100_000_000
ADMITTED, RATE_LIMITED, CAP_REACHED, NO_CREDITS, NEEDS_SEED = 0, 1, 2, 3, 4

ADMIT = """
local now = tonumber(ARGV[1])
local nr, nb, nc = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local a, k = 5, 1
local tats, rem, rst = {}, {}, {}
local retry, denied = -1, 0
for i = 1, nr do
  local period, limit, cost = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  if cost > limit then cost = limit end
  local t = period / limit
  local tat = tonumber(redis.call('GET', KEYS[k]) or '0')
  if tat < now then tat = now end
  local new = tat + cost * t
  if new - now > period then
    local wait = new - period - now
    if wait > retry then retry, denied = wait, i end
    rem[i] = math.floor((period - (tat - now)) / t)
    rst[i] = math.ceil(tat - now)
  else
    tats[i] = new
    rem[i] = math.floor((period - (new - now)) / t)
    rst[i] = math.ceil(new - now)
  end
  k = k + 1
end
local budgets_at = k
for j = 1, nb do
  if redis.call('EXISTS', KEYS[k]) == 0 then return {4, k} end
  k = k + 2
end
if nc == 1 and redis.call('EXISTS', KEYS[k]) == 0 then return {4, k} end
if denied > 0 then
  local out = {1, denied, math.ceil(retry)}
  for i = 1, nr do out[#out + 1] = rem[i]; out[#out + 1] = rst[i] end
  return out
end
k = budgets_at
local b = a
for j = 1, nb do
  local cap, amount, hard = tonumber(ARGV[b]), tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2])
  b = b + 3
  if hard == 1 then
    local spent = tonumber(redis.call('GET', KEYS[k]))
    local reserved = tonumber(redis.call('GET', KEYS[k + 1]) or '0')
    if spent + reserved + amount > cap then return {2, j} end
  end
  k = k + 2
end
if nc == 1 and tonumber(ARGV[b + 1]) == 1 then
  local balance = tonumber(redis.call('GET', KEYS[k]))
  local reserved = tonumber(redis.call('GET', KEYS[k + 1]) or '0')
  if balance - reserved < tonumber(ARGV[b]) then return {3, 0} end
end
for i = 1, nr do
  redis.call('SET', KEYS[i], tats[i], 'PX', math.ceil(tats[i] - now) + 1000)
end
k = budgets_at
b = a
for j = 1, nb do
  redis.call('INCRBY', KEYS[k + 1], ARGV[b + 1])
  b = b + 3
  k = k + 2
end
if nc == 1 then redis.call('INCRBY', KEYS[k + 1], ARGV[b]) end
local out = {0, 0, 0}
for i = 1, nr do out[#out + 1] = rem[i]; out[#out + 1] = rst[i] end
return out
"""

# Releases reservations and books actual amounts; counters that vanished are left for the
# next seed (which reads the database) rather than recreated from this one request.
SETTLE = """
local now = tonumber(ARGV[1])
local nt, nb, nc = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
if #KEYS > nt + 2 * (nb + nc) then
  -- the settle's own marker: a retry of a settle that already ran (its reply was lost)
  -- must not count the request twice
  if not redis.call('SET', KEYS[#KEYS], 1, 'NX', 'PX', 30000) then return 0 end
end
local a, k = 5, 1
for i = 1, nt do
  local period, limit, delta = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  local tat = tonumber(redis.call('GET', KEYS[k]) or '0')
  if tat > 0 and delta ~= 0 then
    local new = tat + delta * (period / limit)
    if new > now then redis.call('SET', KEYS[k], new, 'PX', math.ceil(new - now) + 1000)
    else redis.call('DEL', KEYS[k]) end
  end
  k = k + 1
end
for j = 1, nb + nc do
  local reserved, actual = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  a = a + 2
  if redis.call('EXISTS', KEYS[k + 1]) == 1 then
    local left = redis.call('DECRBY', KEYS[k + 1], reserved)
    if left < 0 then redis.call('SET', KEYS[k + 1], 0, 'KEEPTTL') end
  end
  if redis.call('EXISTS', KEYS[k]) == 1 then
    if j <= nb then redis.call('INCRBY', KEYS[k], actual)
    else redis.call('DECRBY', KEYS[k], actual) end
  end
  k = k + 2
end
return 1
"""
ADMIT_SCRIPT, SETTLE_SCRIPT = ADMIT.encode(), SETTLE.encode()


class SettleError(redis.RedisError):
    """Some settles of a batch failed; `failed` holds those (the others ran)."""

    def __init__(self, failed: list) -> None:
        super().__init__(f"{len(failed)} settles failed")
        self.failed = failed


def to_units(amount: Decimal) -> int:
    return int(amount * UNITS_PER_USD)


def from_units(units: int) -> Decimal:
    return Decimal(units) / UNITS_PER_USD


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`limit` units per `period_ms` under `key`; `is_tokens` for tokens-per-minute."""

    key: str
    period_ms: int
    limit: int
    is_tokens: bool = False
    name: str = ""


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending counter (`spent_key`, `reserved_key`) with a cap; hard caps refuse."""

    spent_key: str
    reserved_key: str
    cap_units: int
    is_hard: bool
    seed_ttl_ms: int
    name: str = ""


@dataclass(frozen=True, slots=True)
class Credits:
    balance_key: str
    reserved_key: str
    enforce: bool


@dataclass(slots=True)
class Admission:
    status: int
    rate_limits: Sequence[RateLimit] = ()
    remaining: list[int] = field(default_factory=list)
    reset_ms: list[int] = field(default_factory=list)
    denied_index: int = 0  # 1-based index of the denying rate limit or budget
    retry_after_ms: int = 0
    seed_key: str = ""


@dataclass(slots=True)
class Plan:
    """Everything one request is checked against, and what it reserves."""

    rate_limits: list[RateLimit]
    request_cost: list[int]  # per rate limit: 1 for request limits, estimated tokens for TPM
    budgets: list[Budget]
    reserve_units: int
    credits: Credits | None = None
    credit_units: int = 0

    def keys(self) -> list[str]:
        keys = [r.key for r in self.rate_limits]
        for b in self.budgets:
            keys += [b.spent_key, b.reserved_key]
        if self.credits:
            keys += [self.credits.balance_key, self.credits.reserved_key]
        return keys


class Limiter:
    """Runs the scripts on an asyncio Redis client (real, or fakeredis in the embedded mode)."""

    def __init__(self, redis) -> None:
        self.redis = redis
        # The gateway's lean pipelined connection, or a redis-py client (fakeredis included).
        self.pipe = redis if isinstance(redis, RedisPipe) else None
        if self.pipe is None:
            self._admit = redis.register_script(ADMIT)
            self._settle = redis.register_script(SETTLE)

    async def admit(self, plan: Plan, now_ms: int) -> Admission:
        args: list[int] = [
            now_ms,
            len(plan.rate_limits),
            len(plan.budgets),
            int(plan.credits is not None),
        ]
        for limit, cost in zip(plan.rate_limits, plan.request_cost, strict=True):
            args += [limit.period_ms, limit.limit, cost]
        for budget in plan.budgets:
            args += [budget.cap_units, plan.reserve_units, int(budget.is_hard)]
        if plan.credits is not None:
            args += [plan.credit_units, int(plan.credits.enforce)]
        keys = plan.keys()
        if self.pipe is not None:
            result = await self.pipe.evalsha(ADMIT_SCRIPT, keys, args)
        else:
            result = await self._admit(keys=keys, args=args)
        status = int(result[0])
        if status == NEEDS_SEED:
            return Admission(NEEDS_SEED, seed_key=keys[int(result[1]) - 1])
        admission = Admission(status, plan.rate_limits, denied_index=int(result[1]))
        if status in (ADMITTED, RATE_LIMITED):
            admission.retry_after_ms = int(result[2])
            pairs = result[3:]
            admission.remaining = [int(x) for x in pairs[0::2]]
            admission.reset_ms = [int(x) for x in pairs[1::2]]
        return admission

    async def seed(self, key: str, units: int, ttl_ms: int | None, reserved_key: str) -> None:
        """Set a missing counter from the database's figure (no-op if another got there first)."""
        if self.pipe is not None:
            expiry = (b"PX", ttl_ms) if ttl_ms else ()
            await self.pipe.ensure_connected()
            first = self.pipe.send(b"SET", key, units, b"NX", *expiry)
            second = self.pipe.send(b"SET", reserved_key, 0, b"NX", *expiry)
            await first
            await second
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(key, units, nx=True, px=ttl_ms)
            pipe.set(reserved_key, 0, nx=True, px=ttl_ms)
            await pipe.execute()

    @staticmethod
    def settle_call(
        plan: Plan,
        now_ms: int,
        *,
        actual_units: int,
        actual_tokens: int,
        credit_units: int,
        settle_id: str | None = None,
    ) -> tuple[list[str], list[int]]:
        """The SETTLE script's keys and arguments for one request.

        With `settle_id`, the script runs at most once for it within 30 s, so a settle whose
        reply was lost (a timeout, a dropped connection) can be sent again safely.
        """
        token_limits = [
            (limit, cost)
            for limit, cost in zip(plan.rate_limits, plan.request_cost, strict=True)
            if limit.is_tokens
        ]
        keys = [limit.key for limit, _ in token_limits]
        args: list[int] = [
            now_ms,
            len(token_limits),
            len(plan.budgets),
            int(plan.credits is not None),
        ]
        for limit, estimated in token_limits:
            args += [limit.period_ms, limit.limit, actual_tokens - estimated]
        for budget in plan.budgets:
            keys += [budget.spent_key, budget.reserved_key]
            args += [plan.reserve_units, actual_units]
        if plan.credits is not None:
            keys += [plan.credits.balance_key, plan.credits.reserved_key]
            args += [plan.credit_units, credit_units]
        if settle_id is not None:
            keys.append(f"sy:settled:{settle_id}")
        return keys, args

    async def current_epoch(self) -> int:
        """The Redis run the counters belong to (bumped by a restart); 0 without the pipe."""
        if self.pipe is None:
            return 0
        await self.pipe.ensure_connected()
        return self.pipe.epoch

    def epoch(self) -> int:
        """The last known run, without a round trip (what an admit just ran against)."""
        return self.pipe.epoch if self.pipe is not None else 0

    async def settle_many(self, calls: Sequence[tuple[list[str], list[int]]]) -> None:
        """Run many settles in one pipelined round trip (each is atomic on its own)."""
        if self.pipe is not None:
            await self._settle_pipelined(calls)
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                await self._settle(keys=keys, args=args, client=pipe)
            await pipe.execute()

    async def _settle_pipelined(self, calls: Sequence[tuple[list[str], list[int]]]) -> None:
        """Write every settle, then read the replies; raise if any failed, after the others.

        Only the calls whose reply was an error are left for the caller's retry; one whose
        reply was lost may have run, which its settle id makes harmless to send again.
        """
        pipe = self.pipe
        await pipe.ensure_connected()
        futures = [pipe.evalsha_nowait(SETTLE_SCRIPT, keys, args) for keys, args in calls]
        failed: list[tuple[list[str], list[int]]] = []
        error: Exception | None = None
        for call, future in zip(calls, futures, strict=True):
            try:
                await future
            except redis.ResponseError as exc:
                if str(exc).startswith("NOSCRIPT"):  # Redis lost its script cache: not run
                    try:
                        await pipe.evalsha(SETTLE_SCRIPT, *call)
                        continue
                    except redis.RedisError as again:
                        exc = again
                error = error or exc
                failed.append(call)
            except redis.RedisError as exc:
                error = error or exc
                failed.append(call)
        if error is not None:
            raise SettleError(failed) from error
