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
import functools
import logging
import time
from datetime import datetime

from django.db import DataError, IntegrityError, close_old_connections
from django.utils import timezone

from providers.services import stamp_keys_used
from tenants.audit import KEY_USE_SAMPLE_INTERVAL, record_keys_used
from usage import journal
from usage.entries import UsageEntry
from usage.recording import latest_by, write_each, write_usage

logger = logging.getLogger(__name__)

# Bounded by memory: ~300 bytes an entry, so 1M entries is ~300 MB held while the
# database is down; past that the oldest are dropped and counted (and logged).
MAX_PENDING = 1_000_000


def _write(
    entries: list[UsageEntry], verify: bool = False, audited: dict[int, float] | None = None
) -> None:
    close_old_connections()
    try:
        if verify:
            # A write that failed may have committed all the same (the connection dropped
            # after COMMIT reached the server): insert only what the database lacks.
            entries = journal.not_recorded(entries)
        write_usage(entries)
        last_used = latest_by(entries, "provider_key_id")
        stamp_keys_used(last_used=last_used)
        _audit_key_use(entries, last_used, audited if audited is not None else {})
    finally:
        close_old_connections()


def _audit_key_use(
    entries: list[UsageEntry], last_used: dict[int, datetime], audited: dict[int, float]
) -> None:
    """The audit log's sampled "router used this key" entry, at most one per key per hour.

    `audited` remembers which keys this process saw noted, so most batches skip the
    database check that record_keys_used makes across processes.
    """
    now = time.monotonic()
    due = {pk for pk in last_used if audited.get(pk, 0.0) <= now}
    if not due:
        return
    record_keys_used(
        [(e.tenant_id, e.provider_key_id) for e in entries if e.provider_key_id in due],
        timezone.now(),
    )
    for pk in due:
        audited[pk] = now + KEY_USE_SAMPLE_INTERVAL.total_seconds()


def _salvage(entries: list[UsageEntry]) -> list[UsageEntry]:
    """Write `entries` one by one (skipping any already stored); return those refused."""
    return write_each(entries, functools.partial(_write, verify=True))


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
        self._audited: dict[int, float] = {}  # provider key -> when its use is next audited
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
            try:
                await self.flush()
            except Exception:  # a boundary: the writer loop must outlive any one round
                logger.exception("usage_sink.flush_failed")

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
            self._journal_op("rotate")  # the rotated segments hold no entry beyond `taken`
            chunk = self.batch_size * 4
            for start in range(0, len(taken), chunk):
                batch = taken[start : start + chunk]
                started = time.perf_counter()
                try:
                    try:
                        await asyncio.to_thread(_write, batch, self._verify, self._audited)
                    except (DataError, IntegrityError):
                        # The database answered but refused the data: retrying the same
                        # batch would fail forever and hold back every later entry. Write
                        # what it takes one entry at a time; log and count the rest.
                        logger.exception("usage_sink.batch_refused", extra={"entries": len(batch)})
                        refused = await asyncio.to_thread(_salvage, batch)
                        self.dropped += len(refused)
                        batch = [e for e in batch if e not in refused]
                except asyncio.CancelledError:  # shutting down mid-write: close() retries
                    self._keep(taken[start:])
                    raise
                except Exception:  # a boundary: keep the rest, retry next round
                    logger.exception("usage_sink.write_failed", extra={"entries": len(batch)})
                    self._keep(taken[start:])
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
            self._journal_op("release")

    def _journal_op(self, name: str) -> None:
        """Rotate or release the journal; a disk that fails switches it off, never the writer."""
        if self.journal is None:
            return
        try:
            getattr(self.journal, name)()
        except OSError:
            logger.exception("usage_journal.failed", extra={"operation": name})
            self.journal = None

    def _keep(self, unwritten: list[UsageEntry]) -> None:
        """Put back what a failed write left, for the next round (bounded by MAX_PENDING)."""
        self._verify = True  # the failed write may have committed: check before inserting
        self.pending[:0] = unwritten
        overflow = len(self.pending) - MAX_PENDING
        if overflow > 0:
            del self.pending[:overflow]
            self.dropped += overflow

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
