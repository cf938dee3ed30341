"""The usage writer: the gateway queues entries; a background task inserts them in batches.

Adding an entry is an append to a list: the response never waits for the database. Batches
are written in a worker thread (one thread hop per batch, not per request). A batch that
fails to write (database down) is kept and retried, up to MAX_PENDING entries; a graceful
shutdown drains everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from django.db import close_old_connections

from providers.services import stamp_keys_used
from usage.entries import UsageEntry
from usage.recording import latest_by, write_usage

logger = logging.getLogger(__name__)

# Bounded by memory: ~300 bytes an entry, so 1M entries is ~300 MB held while the
# database is down; past that the oldest are dropped and counted.
MAX_PENDING = 1_000_000


def _write(entries: list[UsageEntry]) -> None:
    close_old_connections()
    try:
        write_usage(entries)
        stamp_keys_used(last_used=latest_by(entries, "provider_key_id"))
    finally:
        close_old_connections()


class UsageSink:
    def __init__(self, *, flush_seconds: float, batch_size: int) -> None:
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.pending: list[UsageEntry] = []
        self.written = 0
        self.dropped = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()

    def add(self, entry: UsageEntry) -> None:
        self.pending.append(entry)
        if len(self.pending) >= self.batch_size:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            while self.pending:
                batch, self.pending = (
                    self.pending[: self.batch_size * 4],
                    self.pending[self.batch_size * 4 :],
                )
                started = time.perf_counter()
                try:
                    await asyncio.to_thread(_write, batch)
                except Exception:  # a boundary: keep the batch, retry next round
                    logger.exception("usage_sink.write_failed", extra={"entries": len(batch)})
                    self.pending[:0] = batch
                    overflow = len(self.pending) - MAX_PENDING
                    if overflow > 0:
                        del self.pending[:overflow]
                        self.dropped += overflow
                    return
                self.written += len(batch)
                logger.debug(
                    "usage_sink.flushed",
                    extra={
                        "entries": len(batch),
                        "ms": int((time.perf_counter() - started) * 1000),
                    },
                )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _ in range(3):
            await self.flush()
            if not self.pending:
                return
            await asyncio.sleep(0.5)
        if self.pending:
            logger.error("usage_sink.lost_on_shutdown", extra={"entries": len(self.pending)})
