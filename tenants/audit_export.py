"""The audit log as rows, CSV and JSON lines: one shape for the admin, the management API, the
tenant page and the export command.

Every text cell of a CSV is made safe for spreadsheets: usernames, labels and target names
are chosen by users, and a cell starting with "=" would otherwise run as a formula.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import datetime
from itertools import islice
from typing import Any

from asgiref.sync import sync_to_async

from tenants.models import AuditLog

COLUMNS = [
    "id",
    "created_at",
    "tenant",
    "actor",
    "action",
    "target_type",
    "target_id",
    "target",
    "changes",
    "ip_address",
    "user_agent",
]
# What a tenant sees as the actor of a staff member's change: the operator's people are not
# named to customers, and neither are their addresses.
STAFF_LABEL = "Switchyard staff"
# Rows per server-side cursor round trip and per streamed chunk: memory stays at one batch.
EXPORT_BATCH_ROWS = 2000
# Spreadsheets (Excel, LibreOffice, Sheets) evaluate a cell starting with one of these;
# tab and carriage return are there because some strip them and then evaluate.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")


def safe_cell(value: Any) -> str:
    """A text cell a spreadsheet will show rather than evaluate (prefixed with a quote)."""
    text = "" if value is None else str(value)
    if text.startswith(FORMULA_STARTS) or text.lstrip().startswith(FORMULA_STARTS[:4]):
        return "'" + text
    return text


def entry_fields(entry: AuditLog, *, for_tenant: bool) -> dict[str, Any]:
    """One entry as COLUMNS' values. `for_tenant`: as a tenant's owner may see it (staff
    unnamed, their address and browser left out). Needs `actor` and `tenant` joined."""
    by_staff = entry.actor is not None and entry.actor.is_staff
    hidden = for_tenant and by_staff
    return {
        "id": entry.pk,
        "created_at": entry.created_at,
        "tenant": entry.tenant.slug if entry.tenant is not None else "",
        "actor": STAFF_LABEL if hidden else entry.actor_label,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "target": entry.target_repr,
        "changes": entry.changes,
        "ip_address": None if hidden else entry.ip_address,
        "user_agent": "" if hidden else entry.user_agent,
    }


def _cells(fields: dict[str, Any]) -> list[str]:
    created: datetime = fields["created_at"]
    return [
        str(fields["id"]),
        created.isoformat(),
        *(
            safe_cell(fields[name])
            for name in ("tenant", "actor", "action", "target_type", "target_id", "target")
        ),
        safe_cell(json.dumps(fields["changes"], ensure_ascii=False, sort_keys=True)),
        fields["ip_address"] or "",
        safe_cell(fields["user_agent"]),
    ]


def csv_chunks(
    entries: Iterable[AuditLog], *, for_tenant: bool, batch: int = EXPORT_BATCH_ROWS
) -> Iterator[str]:
    """The header row, then one row per entry, `batch` rows per chunk."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    for count, entry in enumerate(entries, 1):
        writer.writerow(_cells(entry_fields(entry, for_tenant=for_tenant)))
        if count % batch == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def jsonl_lines(entries: Iterable[AuditLog], *, for_tenant: bool) -> Iterator[str]:
    """One JSON object per entry and line (no formula escaping: JSON is not a spreadsheet)."""
    for entry in entries:
        fields = entry_fields(entry, for_tenant=for_tenant)
        fields["created_at"] = fields["created_at"].isoformat()
        yield json.dumps(fields, ensure_ascii=False, sort_keys=True) + "\n"


async def pull_in_thread(chunks: Iterator[str]) -> AsyncIterator[str]:
    """Serve a sync iterator under ASGI a chunk at a time, in the thread that owns its
    database cursor (Django would otherwise read the whole export into a list first)."""
    next_chunk = sync_to_async(lambda: list(islice(chunks, 1)), thread_sensitive=True)
    while chunk := await next_chunk():
        yield chunk[0]


def streamed(entries: Iterable[AuditLog], *, for_tenant: bool, is_async: bool):
    """The CSV chunks of `entries`, as an async iterator when served over ASGI."""
    chunks = csv_chunks(entries, for_tenant=for_tenant)
    return pull_in_thread(chunks) if is_async else chunks


__all__ = [
    "COLUMNS",
    "EXPORT_BATCH_ROWS",
    "STAFF_LABEL",
    "csv_chunks",
    "entry_fields",
    "jsonl_lines",
    "safe_cell",
    "streamed",
]
