"""Failed authentications counted per client address (and per username at the log-in page),
shared by every process through Redis; past a limit, the rest of the window is refused.

A failure costs one Redis call: INCR, with the window's expiry set by the first failure
(a fixed window, so refusals end when it does, however hard a client keeps trying). The
reply carries the count and the window's remaining time. The gateway learns the addresses
it must refuse from these replies and keeps them in a `Blocklist`, so a successful request
costs a dict lookup and no Redis call; the log-in page and the management API's key
authentication (tenants.api.authentication), not hot paths, ask Redis first. The gateway and
the management API count API-key failures in the same `API` counter per address.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import logging
import math
import time
from dataclasses import dataclass

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

# API-key failures (the gateway's and the management API's, one counter per address), and
# the log-in page's per address and per username.
API = "api"
LOGIN_ADDRESS = "login-ip"
LOGIN_USERNAME = "login-user"

# KEYS[1] the counter; ARGV[1] the window in ms. Returns {failures, ms left in the window}.
# A counter left without an expiry (written by something else) gets one rather than
# refusing forever.
COUNT_FAILURE = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""
# An address list this long is a distributed attack; expired entries are dropped first,
# then the oldest, so memory stays bounded (Redis still counts every address).
MAX_BLOCKED = 100_000


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a counter says after a failure (or on a look-up)."""

    failures: int
    retry_after: int  # whole seconds until the window ends
    is_blocked: bool  # the limit is reached: later attempts are refused


def refuses(verdict: Verdict, identity: str, limit: int) -> bool:
    """Whether the failure just counted is answered 429 rather than 401: the one that reaches
    the limit is still a 401 (and logged as the block); every later one is refused."""
    if not verdict.is_blocked:
        return False
    if verdict.failures == limit:
        logger.warning(
            "auth.client_address_blocked",
            extra={"client_address": identity, "seconds": verdict.retry_after},
        )
        return False
    return True


def counter_key(kind: str, identity: str) -> str:
    # Usernames are hashed: any length, any characters, and not readable in Redis.
    if kind == LOGIN_USERNAME:
        identity = hashlib.sha256(identity.casefold().encode()).hexdigest()[:32]
    return f"sy:authfail:{kind}:{identity}"


def api_identity(address: str) -> str:
    """What an address's API-key failures are counted under: an IPv6 address by its /64 (one
    client holds a whole /64, so counting single addresses would not slow it)."""
    if ":" in address:
        try:
            return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
        except ValueError:
            return address
    return address


def _verdict(failures: int, ttl_ms: int, limit: int) -> Verdict:
    return Verdict(failures, max(1, math.ceil(ttl_ms / 1000)), failures >= limit)


async def count_failure_async(
    client, kind: str, identity: str, *, limit: int, window_seconds: int
) -> Verdict:
    """Count a failure of `identity` (the gateway's asyncio client)."""
    failures, ttl = await client.eval(
        COUNT_FAILURE, 1, counter_key(kind, identity), window_seconds * 1000
    )
    return _verdict(int(failures), int(ttl), limit)


@functools.cache
def _client() -> redis.Redis:
    if settings.REDIS_URL:
        return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    import fakeredis  # the embedded default: one process, so in-process counters suffice

    return fakeredis.FakeRedis()


def count_failure(kind: str, identity: str, *, limit: int, window_seconds: int) -> Verdict:
    """Count a failure of `identity`; raises redis.RedisError when Redis cannot be reached."""
    failures, ttl = _client().eval(
        COUNT_FAILURE, 1, counter_key(kind, identity), window_seconds * 1000
    )
    return _verdict(int(failures), int(ttl), limit)


def refusal(kind: str, identity: str, *, limit: int) -> int | None:
    """Seconds `identity` is still refused for, or None; raises redis.RedisError."""
    key = counter_key(kind, identity)
    failures, ttl = _client().pipeline(transaction=False).get(key).pttl(key).execute()
    if failures is None or int(failures) < limit or ttl is None or ttl <= 0:
        return None
    return _verdict(int(failures), int(ttl), limit).retry_after


def forget(kind: str, identity: str) -> None:
    """Clear `identity`'s failures (a username that has just logged in)."""
    _client().delete(counter_key(kind, identity))


class Blocklist:
    """Addresses refused until a moment (monotonic clock), learned from failure replies."""

    __slots__ = ("_until",)

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def __bool__(self) -> bool:
        return bool(self._until)

    def retry_after(self, address: str, now: float | None = None) -> int | None:
        """Whole seconds `address` is still refused for, or None."""
        until = self._until.get(address)
        if until is None:
            return None
        left = until - (time.monotonic() if now is None else now)
        if left <= 0:
            del self._until[address]
            return None
        return max(1, math.ceil(left))

    def add(self, address: str, seconds: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if len(self._until) >= MAX_BLOCKED and address not in self._until:
            self._until = {a: u for a, u in self._until.items() if u > now}
            while len(self._until) >= MAX_BLOCKED:  # dicts keep insertion order
                del self._until[next(iter(self._until))]
        self._until[address] = now + seconds

    def clear(self) -> None:
        self._until.clear()
