"""Writes of usage records in batches (the gateway's usage writer calls this in a thread)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction

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
            UsageRecord(
                created_at=e.created_at,
                tenant_id=e.tenant_id,
                end_user_id=e.end_user_id
                or end_users.get((e.tenant_id, e.end_user_external_id or "")),
                api_key_id=e.api_key_id,
                request_id=e.request_id,
                attempt=e.attempt,
                provider_id=e.provider_id,
                model_id=e.model_id,
                key_source=e.key_source,
                power_level=e.power_level,
                outcome=e.outcome,
                http_status=e.http_status,
                is_stream=e.is_stream,
                is_estimated=e.is_estimated,
                input_tokens=e.input_tokens,
                cached_tokens=e.cached_tokens,
                output_tokens=e.output_tokens,
                cost_usd=e.cost_usd,
                latency_ms=e.latency_ms,
                ttft_ms=e.ttft_ms,
                error=e.error[:ERROR_CHARS],
            )
            for e in entries
        ]
        UsageRecord.objects.bulk_create(rows, batch_size=1000)
        CreditLedgerEntry.objects.bulk_create(_debits(entries))
        _stamp_last_used(entries)
    return len(rows)


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
            tenant_id=tenant_id, kind=kind, amount_usd=-amount, reason=f"{count} upstream attempts"
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
