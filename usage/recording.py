"""Writes of usage records in batches (the gateway's usage writer calls this in a thread)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal

from django.db import DataError, IntegrityError, connection, transaction

from tenants.models import EndUser, TenantAPIKey
from usage.choices import KeySource, LedgerKind
from usage.entries import UsageEntry
from usage.models import CreditLedgerEntry, UsageRecord

logger = logging.getLogger(__name__)

ERROR_CHARS = 200


def _resolve_end_users(entries: Sequence[UsageEntry]) -> dict[tuple[int, str], int]:
    """Ids of the end users named in `entries`, creating those seen for the first time."""
    wanted = {
        (e.tenant_id, e.end_user_external_id)
        for e in entries
        if e.end_user_id is None and e.end_user_external_id
    }
    if not wanted:
        return {}
    found = {}
    for tenant_id in {t for t, _ in wanted}:
        names = [x for t, x in wanted if t == tenant_id]
        for pk, external_id in EndUser.objects.filter(
            tenant_id=tenant_id, external_id__in=names
        ).values_list("pk", "external_id"):
            found[(tenant_id, external_id)] = pk
    missing = wanted - found.keys()
    if missing:
        EndUser.objects.bulk_create(
            [EndUser(tenant_id=t, external_id=x) for t, x in missing], ignore_conflicts=True
        )
        for t, x in missing:
            found[(t, x)] = EndUser.objects.only("pk").get(tenant_id=t, external_id=x).pk
    return found


# The columns written, in COPY order; `id` comes from the sequence.
COLUMNS = (
    "created_at",
    "tenant_id",
    "end_user_id",
    "api_key_id",
    "request_id",
    "attempt",
    "provider_id",
    "model_id",
    "key_source",
    "power_level",
    "outcome",
    "http_status",
    "is_stream",
    "is_estimated",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "error",
)


def write_usage(entries: Sequence[UsageEntry]) -> int:
    """Insert `entries` as UsageRecord rows in one transaction; stamp keys' last use."""
    if not entries:
        return 0
    with transaction.atomic():
        try:
            end_users = _resolve_end_users(entries)
        except IntegrityError:
            end_users = _resolve_end_users(entries)
        rows = [
            (
                e.created_at,
                e.tenant_id,
                e.end_user_id or end_users.get((e.tenant_id, e.end_user_external_id or "")),
                e.api_key_id,
                e.request_id,
                e.attempt,
                e.provider_id,
                e.model_id,
                e.key_source,
                e.power_level,
                e.outcome,
                e.http_status,
                e.is_stream,
                e.is_estimated,
                e.input_tokens,
                e.cached_tokens,
                e.output_tokens,
                e.cost_usd,
                e.latency_ms,
                e.ttft_ms,
                e.error[:ERROR_CHARS].replace("\x00", "") if e.error else "",
            )
            for e in entries
        ]
        _insert_rows(rows)
        CreditLedgerEntry.objects.bulk_create(_debits(entries))
        _stamp_last_used(entries)
    return len(rows)


def _insert_rows(rows: list[tuple]) -> None:
    """COPY on PostgreSQL; a plain executemany elsewhere (the embedded SQLite).

    The ORM's bulk_create built a model instance and prepared every field of every row in
    Python: ~30 % of the gateway's CPU under load (py-spy). COPY hands psycopg's C dumpers
    plain tuples and PostgreSQL parses them in one stream.
    """
    table = connection.ops.quote_name(UsageRecord._meta.db_table)
    columns = ", ".join(COLUMNS)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            marks = ", ".join(["%s"] * len(COLUMNS))
            cursor.executemany(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})",  # noqa: S608
                [_portable(row) for row in rows],
            )


def _portable(row: tuple) -> tuple:
    """Values as Django's fields would send them to a backend without native types."""
    ops = connection.ops
    row = list(row)
    row[0] = ops.adapt_datetimefield_value(row[0])
    row[4] = row[4].hex
    row[17] = ops.adapt_decimalfield_value(row[17])
    return tuple(row)


def _debits(entries: Sequence[UsageEntry]) -> list[CreditLedgerEntry]:
    """One ledger entry per tenant and kind per batch: the sum of the batch's debits.

    Written in the same transaction as the usage rows, so a request is recorded if and only
    if it is charged, and the ledger stays small (a row per batch, not per request).
    """
    totals: dict[tuple[int, str], tuple[Decimal, int]] = {}
    for e in entries:
        if e.credit_debit_usd:
            kind = (
                LedgerKind.USAGE if e.key_source == KeySource.PLATFORM else LedgerKind.PLATFORM_FEE
            )
            amount, count = totals.get((e.tenant_id, kind), (Decimal(0), 0))
            totals[(e.tenant_id, kind)] = (amount + e.credit_debit_usd, count + 1)
    return [
        CreditLedgerEntry(
            tenant_id=tenant_id,
            kind=kind,
            amount_usd=-amount,
            reason=f"{count} upstream attempt{'' if count == 1 else 's'}",
        )
        for (tenant_id, kind), (amount, count) in totals.items()
    ]


def _stamp_last_used(entries: Sequence[UsageEntry]) -> None:
    """One UPDATE per API key per batch instead of a write per request."""
    for pk, at in latest_by(entries, "api_key_id").items():
        TenantAPIKey.objects.filter(pk=pk).update(last_used_at=at)


def latest_by(entries: Sequence[UsageEntry], attribute: str) -> dict[int, datetime]:
    """The newest `created_at` per non-empty value of `attribute`."""
    latest: dict[int, datetime] = {}
    for e in entries:
        pk = getattr(e, attribute)
        if pk and (pk not in latest or e.created_at > latest[pk]):
            latest[pk] = e.created_at
    return latest


def write_each(
    entries: Sequence[UsageEntry], write: Callable[[list[UsageEntry]], object]
) -> list[UsageEntry]:
    """`write` the entries one at a time; return those the database refused (DataError,
    IntegrityError), each logged with its request id. A batch with one bad entry must not be
    retried forever, holding back every entry after it. Other errors propagate."""
    refused = []
    for entry in entries:
        try:
            write([entry])
        except (DataError, IntegrityError):
            logger.exception(
                "usage.entry_refused",
                extra={"request_id": str(entry.request_id), "tenant_id": entry.tenant_id},
            )
            refused.append(entry)
    return refused
