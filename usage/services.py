"""Writes for usage: credits, caps and alerts."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction

from tenants import audit
from tenants.models import Tenant
from usage import counters
from usage.choices import LedgerKind
from usage.models import CreditLedgerEntry
from usage.money import quantize_usd

# What staff may add by hand; usage and platform fees are written by metering only.
GRANTABLE_KINDS = (LedgerKind.GRANT, LedgerKind.PURCHASE, LedgerKind.ADJUSTMENT)


def grant_credits(
    *,
    tenant: Tenant,
    amount_usd: Decimal,
    reason: str,
    actor: Any,
    kind: str = LedgerKind.GRANT,
) -> CreditLedgerEntry:
    """Add prepaid credits to `tenant` (an adjustment may also remove them); audited.

    Raises ValueError for a kind metering owns, a zero amount, or a negative grant/purchase.
    """
    if kind not in GRANTABLE_KINDS:
        raise ValueError(f"Credits of kind {kind!r} are written by metering, not by hand.")
    amount = quantize_usd(Decimal(amount_usd))
    if amount == 0:
        raise ValueError("The amount is zero.")
    if amount < 0 and kind != LedgerKind.ADJUSTMENT:
        raise ValueError("Only an adjustment may remove credits.")
    entry = CreditLedgerEntry(
        tenant=tenant,
        kind=kind,
        amount_usd=amount,
        reason=reason,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    entry.full_clean()
    with transaction.atomic():
        entry.save()
        audit.record(
            actor=actor,
            tenant=tenant,
            action="credits.granted",
            target=entry,
            changes={"kind": kind, "amount_usd": str(amount), "reason": reason},
        )
        # The gateway checks credits against a live balance in Redis: move it too, once the
        # entry is committed (a balance not loaded yet is seeded from the ledger later).
        tenant_id = tenant.pk
        transaction.on_commit(
            lambda: counters.adjust_credit_balance(tenant_id=tenant_id, amount_usd=amount)
        )
    return entry
