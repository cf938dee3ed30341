"""Writes for usage: credits, caps and alerts."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from tenants import audit, config_version
from tenants.crypto import MASK
from tenants.models import Tenant
from usage import counters
from usage.choices import LedgerKind
from usage.models import CreditLedgerEntry, SpendingCap
from usage.money import quantize_cents, quantize_usd

logger = logging.getLogger(__name__)

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


def set_spending_cap(
    *,
    tenant: Tenant,
    scope: str,
    amount_usd: Decimal,
    mode: str,
    actor: Any,
    end_user: Any = None,
    alert_thresholds: list[int] | None = None,
    is_enabled: bool = True,
) -> SpendingCap:
    """Create or change the tenant's cap of `scope` (or `end_user`'s); applies to the next
    request on every web process (the config version is bumped)."""
    if end_user is not None and end_user.tenant_id != tenant.pk:
        raise ValueError("The end user belongs to another tenant.")
    cap = SpendingCap.objects.filter(tenant=tenant, scope=scope, end_user=end_user).first()
    old = (str(cap.amount_usd), cap.mode, cap.is_enabled) if cap else None
    cap = cap or SpendingCap(tenant=tenant, scope=scope, end_user=end_user)
    cap.amount_usd = quantize_cents(Decimal(amount_usd))
    cap.mode = mode
    cap.is_enabled = is_enabled
    if alert_thresholds is not None:
        cap.alert_thresholds = sorted(set(alert_thresholds))
    cap.full_clean()
    with transaction.atomic():
        cap.save()
        audit.record(
            actor=actor,
            tenant=tenant,
            action="spending_cap.updated" if old else "spending_cap.created",
            target=cap,
            changes={"before": old, "after": [str(cap.amount_usd), cap.mode, cap.is_enabled]},
        )
        tenant_id = tenant.pk
        transaction.on_commit(lambda: config_version.bump(tenant_id=tenant_id))
    return cap


# Shown in the audit log instead of the secret.
SECRET_CHANGED = f"{MASK} (changed)"
WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix that names the value, not a secret


def rotate_webhook_secret(*, tenant: Tenant, actor: Any) -> str:
    """Give the tenant a new webhook signing secret and return it: the only time it is shown
    (stored encrypted). Alerts are signed with it from the next delivery on; audited."""
    secret = WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(webhook_secret=secret)
        audit.record(
            actor=actor,
            tenant=tenant,
            action="tenant.webhook_secret_rotated",
            target=tenant,
            changes={"webhook_secret": SECRET_CHANGED},
        )
    tenant.refresh_from_db(fields=["webhook_secret"])
    return secret


def mark_alerts_read(
    *, tenant: Tenant, alert_ids: Iterable[int], actor: Any, now: datetime | None = None
) -> int:
    """Mark the tenant's unread alerts among `alert_ids` read; returns how many changed.

    Another tenant's ids match nothing. Which of its alerts the actor may mark is the
    caller's decision (a member marks those about their own end user).
    """
    ids = {int(pk) for pk in alert_ids}
    if not ids:
        return 0
    changed = tenant.alerts.filter(pk__in=ids, read_at__isnull=True).update(
        read_at=now or timezone.now()
    )
    logger.info(
        "alerts.marked_read",
        extra={"tenant_id": tenant.pk, "count": changed, "actor_id": getattr(actor, "pk", None)},
    )
    return changed
