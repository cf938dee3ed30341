"""Alerts: one per (tenant, dedupe key), enforced by a unique constraint, not by luck."""

from __future__ import annotations

import logging
from datetime import date

from django.db import IntegrityError, transaction

from usage.models import Alert

logger = logging.getLogger(__name__)


def raise_alert(
    *,
    tenant_id: int,
    kind: str,
    dedupe_key: str,
    message: str,
    end_user_id: int | None = None,
    threshold: int | None = None,
    period_start: date | None = None,
) -> Alert | None:
    """Create the alert unless one with the same key exists; returns it only when new."""
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                tenant_id=tenant_id,
                end_user_id=end_user_id,
                kind=kind,
                dedupe_key=dedupe_key[:120],
                message=message[:300],
                threshold=threshold,
                period_start=period_start,
            )
    except IntegrityError:
        return None
    logger.info("alert.raised", extra={"tenant_id": tenant_id, "kind": kind})
    return alert
