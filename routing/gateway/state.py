"""GatewayState: what every request needs, built once at start-up and kept current."""

from __future__ import annotations

import asyncio
import logging
import time

import aiohttp
from django.conf import settings

from config import gc_tuning
from providers.adapters import new_session, trust_hosts, trusted_hosts
from routing.gateway.health import ProviderHealth
from routing.gateway.limits import Limits
from routing.gateway.snapshot import Snapshot, build_snapshot
from routing.gateway.usage_sink import UsageSink
from tenants import config_version
from usage import counters

logger = logging.getLogger(__name__)

POLL_FAILURE_LOG_SECONDS = 60


class GatewayState:
    """The config snapshot (swapped on version change), health, usage sink, one HTTP session."""

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self.snapshot: Snapshot | None = None
        self.session: aiohttp.ClientSession | None = None
        self.redis = None  # redis.asyncio.Redis when REDIS_URL is set
        self.health: ProviderHealth | None = None
        self.sink: UsageSink | None = None
        self.limits: Limits | None = None
        self._poller: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        # Sessions replaced (see _trust_upstream_hosts), each with the task that closes it.
        self._retired: dict[aiohttp.ClientSession, asyncio.Task] = {}
        self.max_body = settings.SWITCHYARD_MAX_BODY_BYTES
        self.max_attempts = settings.SWITCHYARD_MAX_ATTEMPTS
        self.backoff_seconds = settings.SWITCHYARD_RETRY_BACKOFF_MS / 1000
        self.poll_seconds = settings.SWITCHYARD_CONFIG_POLL_SECONDS
        self.timeout = aiohttp.ClientTimeout(
            total=settings.SWITCHYARD_UPSTREAM_TOTAL_TIMEOUT,
            connect=settings.SWITCHYARD_UPSTREAM_CONNECT_TIMEOUT,
            sock_read=settings.SWITCHYARD_UPSTREAM_READ_TIMEOUT,
        )

    async def start(self) -> None:
        started = time.perf_counter()
        self.loop = asyncio.get_running_loop()
        if settings.REDIS_URL:
            self.redis = counters.async_client()
        self.health = ProviderHealth(
            self.redis,
            failures=settings.SWITCHYARD_COOLDOWN_FAILURES,
            cooldown_seconds=settings.SWITCHYARD_COOLDOWN_SECONDS,
        )
        self.session = new_session(connect_timeout=settings.SWITCHYARD_UPSTREAM_CONNECT_TIMEOUT)
        self.sink = UsageSink(
            flush_seconds=settings.SWITCHYARD_USAGE_FLUSH_SECONDS,
            batch_size=settings.SWITCHYARD_USAGE_BATCH_SIZE,
        )
        self.sink.start()
        self.limits = Limits()
        await self.reload(await self._read_version())
        self._poller = asyncio.get_running_loop().create_task(self._poll())
        gc_tuning.tune(settings.SWITCHYARD_GC_THRESHOLDS, freeze=settings.SWITCHYARD_GC_FREEZE)
        logger.info("gateway.started", extra={"ms": int((time.perf_counter() - started) * 1000)})

    async def stop(self) -> None:
        if self._poller:
            self._poller.cancel()
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        if self.sink:
            await self.sink.close()
        for session, closing in list(self._retired.items()):
            closing.cancel()
            await session.close()
        if self.session:
            await self.session.close()
        if self.limits:
            await self.limits.close()
        if self.redis:
            await self.redis.aclose()

    def spawn(self, coro) -> None:
        """Run `coro` in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _read_version(self) -> str:
        if self.redis is not None:
            value = await self.redis.get(config_version.REDIS_KEY)
            return value.decode() if value else "0"
        return await asyncio.to_thread(config_version.read_sync)

    async def reload(self, version: str) -> None:
        snapshot = await asyncio.to_thread(_build, version)
        self._trust_upstream_hosts(snapshot.upstream_hosts)
        self.snapshot = snapshot
        await self.health.refresh(snapshot.providers)
        logger.info("gateway.config_loaded", extra={"version": version})

    def _trust_upstream_hosts(self, hosts: frozenset[str]) -> None:
        """Let connections to the allow-listed hosts skip the SSRF guard. When a host leaves
        the list, connections pooled to it skipped the check and would be reused: requests
        from now on get a new session, and the old one is closed once the requests still on
        it can have ended (the total timeout)."""
        current = trusted_hosts(self.session)
        if hosts == current:
            return
        if not current - hosts:
            trust_hosts(self.session, hosts)
            return
        old, self.session = (
            self.session,
            new_session(
                connect_timeout=settings.SWITCHYARD_UPSTREAM_CONNECT_TIMEOUT, trusted_hosts=hosts
            ),
        )
        self._retired[old] = asyncio.get_running_loop().create_task(self._close_later(old))
        logger.info("gateway.upstream_session_replaced")

    async def _close_later(self, session: aiohttp.ClientSession) -> None:
        await asyncio.sleep(self.timeout.total or 0)
        del self._retired[session]
        await session.close()

    async def _poll(self) -> None:
        """Swap the snapshot when the config version moves; refresh cool-downs.

        While Redis or the database is away the poll fails several times a second: the first
        failure is logged with its traceback, then a line a minute until it recovers.
        """
        failing_since = None
        last_said = 0.0
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                version = await self._read_version()
                if version != self.snapshot.version:
                    await self.reload(version)
                else:
                    await self.health.refresh(self.snapshot.providers)
            except Exception as exc:  # a boundary: keep serving the last good snapshot
                now = time.monotonic()
                if failing_since is None:
                    failing_since = last_said = now
                    logger.exception("gateway.config_poll_failed")
                elif now - last_said >= POLL_FAILURE_LOG_SECONDS:
                    last_said = now
                    logger.warning(
                        "gateway.config_poll_still_failing %s",
                        repr(exc)[:200],
                        extra={"seconds": int(now - failing_since)},
                    )
                continue
            if failing_since is not None:
                logger.warning(
                    "gateway.config_poll_recovered",
                    extra={"seconds": int(time.monotonic() - failing_since)},
                )
                failing_since = None


def _build(version: str) -> Snapshot:
    from django.db import close_old_connections

    close_old_connections()
    try:
        return build_snapshot(version)
    finally:
        close_old_connections()
