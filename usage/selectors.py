"""Reads for usage, caps and credits. Tenant-scoped reads take the tenant (or its id)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet, Sum

from usage.models import CreditLedgerEntry, SpendingCap, UsageRecord


def spent_between(
    *, tenant_id: int, start: datetime, end: datetime, end_user_external_id: str | None = None
) -> Decimal:
    """Recorded cost of the tenant (or of one of its end users) in [start, end)."""
    records = UsageRecord.objects.filter(
        tenant_id=tenant_id, created_at__gte=start, created_at__lt=end
    )
    if end_user_external_id is not None:
        records = records.filter(
            end_user__external_id=end_user_external_id, end_user__tenant_id=tenant_id
        )
    return records.aggregate(total=Sum("cost_usd"))["total"] or Decimal(0)


def credit_balance(*, tenant_id: int) -> Decimal:
    """The ledger's sum: the balance shown anywhere."""
    return CreditLedgerEntry.objects.filter(tenant_id=tenant_id).aggregate(total=Sum("amount_usd"))[
        "total"
    ] or Decimal(0)


def credit_entries(*, tenant_id: int) -> QuerySet[CreditLedgerEntry]:
    return CreditLedgerEntry.objects.filter(tenant_id=tenant_id).select_related("created_by")


def spending_caps(*, tenant_id: int) -> QuerySet[SpendingCap]:
    return SpendingCap.objects.filter(tenant_id=tenant_id).select_related("end_user")


def usage_records(*, tenant_id: int) -> QuerySet[UsageRecord]:
    return UsageRecord.objects.filter(tenant_id=tenant_id)


def platform_enabled_caps() -> QuerySet[SpendingCap]:
    """Every enabled cap, with the end user's external id: what the gateway snapshot loads."""
    return SpendingCap.objects.filter(is_enabled=True).select_related("end_user")
