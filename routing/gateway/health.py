"""Provider health as the router sees it: error rates, and a circuit breaker shared by processes.

A provider that fails COOLDOWN_FAILURES times within the failure window cools down for
COOLDOWN_SECONDS on every web process (Redis keys, laid out in providers/cooldown.py and
also written by the periodic health check), then is half-open ("probing"): it sits
at the end of every chain until a request to it succeeds, which closes the breaker; a
failure while probing cools it down again. The state is read once per poll interval, not
per request; writes happen only on failures (and on the first success while probing).
Without Redis (the embedded default) the same logic runs in process memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from providers.cooldown import FAILURE_WINDOW_SECONDS, PROBE_TTL_FACTOR, RECORD_FAILURE, keys

logger = logging.getLogger(__name__)

# How much one outcome moves a provider's recent error rate (an exponential moving average).
EWMA_WEIGHT = 0.1


class ProviderHealth:
    """Error rates (per process) and the shared cool-down state (per installation)."""

    def __init__(self, redis, *, failures: int, cooldown_seconds: int) -> None:
        self.redis = redis
        self.failures = failures
        self.cooldown_seconds = cooldown_seconds
        self.error_rates: dict[int, float] = {}
        self.cooling: frozenset[int] = frozenset()
        self.probing: frozenset[int] = frozenset()
        self._script = redis.register_script(RECORD_FAILURE) if redis is not None else None
        self._tasks: set[asyncio.Task] = set()
        # Embedded mode: provider -> monotonic deadline.
        self._local_fail: dict[int, list[float]] = {}
        self._local_cool: dict[int, float] = {}
        self._local_probe: dict[int, float] = {}

    def _observe(self, provider_id: int, failed: bool) -> None:
        rate = self.error_rates.get(provider_id, 0.0)
        rate = rate * (1 - EWMA_WEIGHT) + (EWMA_WEIGHT if failed else 0.0)
        if rate < 0.001:
            self.error_rates.pop(provider_id, None)
        else:
            self.error_rates[provider_id] = rate

    def record_failure(self, provider_id: int) -> None:
        self._observe(provider_id, True)
        if self._script is not None:
            self._spawn(self._redis_failure(provider_id))
        else:
            self._local_failure(provider_id, time.monotonic())

    def record_success(self, provider_id: int) -> None:
        self._observe(provider_id, False)
        if provider_id in self.probing:
            self.probing = self.probing - {provider_id}
            if self.redis is not None:
                self._spawn(self.redis.delete(*keys(provider_id)))
            else:
                self._local_probe.pop(provider_id, None)
                self._local_fail.pop(provider_id, None)

    def _spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning(
                "provider_health.redis_write_failed", extra={"error": str(task.exception())}
            )

    async def _redis_failure(self, provider_id: int) -> None:
        opened = await self._script(
            keys=keys(provider_id),
            args=[
                self.failures,
                FAILURE_WINDOW_SECONDS,
                self.cooldown_seconds,
                self.cooldown_seconds * PROBE_TTL_FACTOR,
            ],
        )
        if opened:
            self.cooling = self.cooling | {provider_id}
            logger.warning("provider.cooled_down", extra={"provider_id": provider_id})

    def _local_failure(self, provider_id: int, now: float) -> None:
        if provider_id in self._local_cool and self._local_cool[provider_id] > now:
            return
        recent = [
            t for t in self._local_fail.get(provider_id, []) if now - t < FAILURE_WINDOW_SECONDS
        ]
        recent.append(now)
        self._local_fail[provider_id] = recent
        if len(recent) >= self.failures or provider_id in self.probing:
            self._local_cool[provider_id] = now + self.cooldown_seconds
            self._local_probe[provider_id] = now + self.cooldown_seconds * PROBE_TTL_FACTOR
            self._local_fail.pop(provider_id, None)
            self.cooling = self.cooling | {provider_id}
            logger.warning("provider.cooled_down", extra={"provider_id": provider_id})

    async def refresh(self, provider_ids: Iterable[int]) -> None:
        """Reload which providers are cooling down or probing (one round trip)."""
        ids = list(provider_ids)
        if not ids:
            self.cooling = self.probing = frozenset()
            return
        if self.redis is None:
            now = time.monotonic()
            self.cooling = frozenset(p for p, t in self._local_cool.items() if t > now)
            self.probing = frozenset(
                p for p, t in self._local_probe.items() if t > now and p not in self.cooling
            )
            return
        names = [k for p in ids for k in keys(p)[1:]]
        values = await self.redis.mget(names)
        cooling, probing = set(), set()
        for i, p in enumerate(ids):
            if values[2 * i] is not None:
                cooling.add(p)
            elif values[2 * i + 1] is not None:
                probing.add(p)
        self.cooling, self.probing = frozenset(cooling), frozenset(probing)
