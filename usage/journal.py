"""The usage writer's journal: every entry on disk before its response's last byte is sent.

The gateway writes usage in batches after responding, so a process killed with SIGKILL (or
OOM-killed) would lose the entries it had not written yet. Each entry is first appended, as
one line, to a segment file the process holds an exclusive lock on; the kernel keeps what
was written when the process dies. A segment is deleted once the batch that holds all its
entries is in the database. A starting gateway process (or `replay_usage_journal`) takes
over segments whose owner died — the lock is free — and inserts the entries the database
does not have yet, matched by request id and attempt, so a replay never counts twice.

Segments live under a folder per database, so processes pointed at another database (test
runs side by side) never replay each other's entries.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import logging
import operator
import os
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import orjson
from django.conf import settings
from django.db import DataError, IntegrityError

from usage.entries import UsageEntry

logger = logging.getLogger(__name__)

FIELDS = tuple(f.name for f in dataclasses.fields(UsageEntry))
_VALUES = operator.attrgetter(*FIELDS)  # the field values as a tuple, in C
_DECODE = {
    "created_at": datetime.fromisoformat,
    "request_id": uuid.UUID,
    "cost_usd": Decimal,
    "credit_debit_usd": Decimal,
}
SUFFIX = ".usage"


def _default(value):
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError


def encode(entry: UsageEntry) -> bytes:
    return orjson.dumps(_VALUES(entry), default=_default) + b"\n"


def decode(line: bytes) -> UsageEntry:
    values = orjson.loads(line)
    kwargs = {}
    for name, value in zip(FIELDS, values, strict=True):
        convert = _DECODE.get(name)
        kwargs[name] = convert(value) if convert and value is not None else value
    return UsageEntry(**kwargs)


def directory() -> Path | None:
    """This database's journal folder, or None when the journal is switched off."""
    base = settings.SWITCHYARD_USAGE_JOURNAL_DIR
    if not base:
        return None
    db = settings.DATABASES["default"]
    identity = f"{db['ENGINE']}|{db.get('HOST')}|{db.get('PORT')}|{db['NAME']}"
    path = Path(base) / hashlib.sha256(identity.encode()).hexdigest()[:16]
    path.mkdir(parents=True, exist_ok=True)
    return path


class Journal:
    """Append-only segments owned (flock) by this process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._closed: list[tuple[Path, int]] = []  # rotated, waiting for their batch
        self._open()

    def _open(self) -> None:
        # Created and locked under a name replay does not look at, then renamed: a starting
        # process must never take over a segment between its creation and its lock.
        path = self.folder / f"{os.getpid()}-{time.time_ns()}{SUFFIX}"
        making = path.with_suffix(".new")
        fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(making, path)
        self.path, self.fd, self.size = path, fd, 0

    def append(self, entry: UsageEntry) -> None:
        line = encode(entry)
        if os.write(self.fd, line) != len(line):  # O_APPEND: one write, one whole line
            raise OSError("short write to the usage journal (disk full?)")
        self.size += len(line)

    def rotate(self) -> None:
        """Start a new segment; the current one waits for `release` (still locked)."""
        if self.size == 0:
            return
        self._closed.append((self.path, self.fd))
        self._open()

    def release(self) -> None:
        """Every rotated segment's entries are in the database: delete them."""
        closed, self._closed = self._closed, []
        for path, fd in closed:
            path.unlink(missing_ok=True)  # unlink before unlocking: nobody can replay it
            os.close(fd)

    def close(self, *, delete: bool) -> None:
        """At shutdown: delete everything if all was written, else leave it for a replay."""
        self.rotate()
        if delete:
            self.release()
        else:
            for _, fd in self._closed:
                os.close(fd)
            self._closed = []
        self.path.unlink(missing_ok=True)
        os.close(self.fd)


def orphans(folder: Path) -> Iterable[tuple[Path, int]]:
    """Segments whose owner is gone, each locked for the caller (who must close the fd)."""
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)  # its process is alive
            continue
        yield path, fd


def replay(folder: Path | None = None) -> int:
    """Insert what dead processes journaled and the database lacks; returns rows inserted."""
    folder = folder or directory()
    if folder is None:
        return 0
    inserted = 0
    for path, fd in orphans(folder):
        try:
            with open(fd, "rb", closefd=False) as handle:
                entries = list(_readable(handle, path))
            missing = not_recorded(entries)
            if missing:
                inserted += write_each_if_refused(missing)
            logger.warning(
                "usage_journal.replayed",
                extra={"segment": path.name, "entries": len(entries), "inserted": len(missing)},
            )
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return inserted


def _readable(lines: Iterable[bytes], path: Path) -> Iterable[UsageEntry]:
    """The entries of a segment; a torn or unreadable line is logged and skipped."""
    for number, line in enumerate(lines, 1):
        if not line.endswith(b"\n"):
            continue  # the last line of a process killed mid-write
        try:
            yield decode(line)
        except (ValueError, TypeError, ArithmeticError):
            logger.error("usage_journal.bad_line", extra={"segment": path.name, "line": number})


def write_each_if_refused(entries: list[UsageEntry]) -> int:
    """Write `entries` in one go or, if the database refuses the data, one by one, skipping
    the refused ones (a segment must not be retried forever). Returns how many were
    written; a database that cannot be reached raises as usual."""
    from usage.recording import write_each, write_usage

    try:
        return write_usage(entries)
    except (DataError, IntegrityError):
        logger.exception("usage_journal.batch_refused", extra={"entries": len(entries)})
    return len(entries) - len(write_each(entries, write_usage))


def not_recorded(entries: list[UsageEntry]) -> list[UsageEntry]:
    """The entries without a row yet, found through the (tenant, created_at) index."""
    from usage.models import UsageRecord

    if not entries:
        return []
    found: set[tuple[uuid.UUID, int]] = set()
    for tenant_id in {e.tenant_id for e in entries}:
        mine = [e for e in entries if e.tenant_id == tenant_id]
        found.update(
            UsageRecord.objects.filter(
                tenant_id=tenant_id,
                created_at__gte=min(e.created_at for e in mine),
                created_at__lte=max(e.created_at for e in mine),
                request_id__in={e.request_id for e in mine},
            ).values_list("request_id", "attempt")
        )
    return [e for e in entries if (e.request_id, e.attempt) not in found]
