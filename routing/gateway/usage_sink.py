"""The usage writer: the gateway queues entries; a background task inserts them in batches.

Adding an entry is an append to a list and one line to the journal (usage.journal), so the
response never waits for the database yet a killed process loses nothing. Batches are
written in a worker thread (one thread hop per batch, not per request). A batch that fails
to write (database down) is kept and retried, up to MAX_PENDING entries in memory (the
journal keeps them all); the retry inserts only the entries the database lacks, since a
failed write may have committed before its connection broke. A graceful shutdown drains
everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from django.db import close_old_connections

from providers.services import stamp_keys_used
from usage import journal
from usage.entries import UsageEntry
from usage.recording import latest_by, write_usage

logger = logging.getLogger(__name__)

# Bounded by memory: ~300 bytes an entry, so 1M entries is ~300 MB held while the
# database is down; past that the oldest are dropped and counted (and logged).
MAX_PENDING = 1_000_000


def _write(entries: list[UsageEntry], verify: bool = False) -> None:
    close_old_connections()
    try:
        if verify:
            # A write that failed may have committed all the same (the connection dropped
            # after COMMIT reached the server): insert only what the database lacks.
            entries = journal._not_recorded(entries)
        write_usage(entries)
        stamp_keys_used(last_used=latest_by(entries, "provider_key_id"))
    finally:
        close_old_connections()


def _replay() -> int:
    close_old_connections()
    try:
        return journal.replay()
    finally:
        close_old_connections()


class UsageSink:
    def __init__(self, *, flush_seconds: float, batch_size: int) -> None:
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.pending: list[UsageEntry] = []
        self.written = 0
        self.dropped = 0
        self.replayed = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        self._verify = False  # a write failed: retried entries may be in the database
        folder = journal.directory()
        self.journal = journal.Journal(folder) if folder else None
        self._replay_due = self.journal is not None

    def add(self, entry: UsageEntry) -> None:
        self.pending.append(entry)
        if self.journal is not None:
            try:
                self.journal.append(entry)
            except OSError:  # disk full or gone: keep serving, memory still has it
                logger.exception("usage_journal.append_failed")
                self.journal = None
        if len(self.pending) >= self.batch_size:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            if self._replay_due:
                await self._replay()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.flush_seconds)
            self._wake.clear()
            await self.flush()

    async def _replay(self) -> None:
        """Take over what dead processes journaled (retried until the database answers)."""
        try:
            self.replayed += await asyncio.to_thread(_replay)
            self._replay_due = False
        except Exception:  # a boundary: the database may be down; try again next round
            logger.exception("usage_journal.replay_failed")

    async def flush(self) -> None:
        async with self._lock:
            if not self.pending:
                return
            taken, self.pending = self.pending, []
            if self.journal is not None:
                self.journal.rotate()  # the rotated segments hold no entry beyond `taken`
            chunk = self.batch_size * 4
            for start in range(0, len(taken), chunk):
                batch = taken[start : start + chunk]
                started = time.perf_counter()
                try:
                    await asyncio.to_thread(_write, batch, self._verify)
                except Exception:  # a boundary: keep the rest, retry next round
                    logger.exception("usage_sink.write_failed", extra={"entries": len(batch)})
                    self._verify = True
                    self.pending[:0] = taken[start:]
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
            self._verify = False
            if self.journal is not None:
                self.journal.release()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _ in range(3):
            await self.flush()
            if not self.pending:
                break
            await asyncio.sleep(0.5)
        if self.pending:
            logger.error(
                "usage_sink.left_in_journal" if self.journal else "usage_sink.lost_on_shutdown",
                extra={"entries": len(self.pending)},
            )
        if self.journal is not None:
            self.journal.close(delete=not self.pending)
