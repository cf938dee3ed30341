"""The audit log's one writer: every app records through here."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import models

from tenants.models import AuditLog, Tenant

logger = logging.getLogger(__name__)


def record(
    *,
    action: str,
    actor: Any = None,
    tenant: Tenant | None = None,
    target: models.Model | None = None,
    changes: Mapping[str, Any] | None = None,
    ip_address: str | None = None,
    actor_label: str = "",
) -> AuditLog:
    """Append one entry. `changes` must hold no secret (callers pass masked values).

    `actor` is a login user, or any object with `get_username()` (an API key acting through
    the management API is labelled, not linked), or None for the system.
    """
    is_user = isinstance(actor, AbstractBaseUser) and actor.is_authenticated
    named = actor is not None and hasattr(actor, "get_username")
    entry = AuditLog.objects.create(
        action=action,
        actor=actor if is_user else None,
        actor_label=actor_label or (actor.get_username() if named else "system"),
        tenant=tenant,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        changes=dict(changes or {}),
        ip_address=ip_address,
    )
    logger.debug("audit.%s", action, extra={"tenant_id": getattr(tenant, "pk", None)})
    return entry
