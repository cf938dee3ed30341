"""Side effects of what the gateway saw, run off the event loop (sync ORM, in a thread)."""

from __future__ import annotations

import logging

from django.db import close_old_connections

from providers.services import mark_key_invalid
from usage.alerts import raise_alert
from usage.choices import AlertKind

logger = logging.getLogger(__name__)


def report_invalid_key(key_id: int, tenant_id: int, error: str) -> None:
    """A provider rejected key `key_id` (401/403): take it out of routing, alert its owner."""
    close_old_connections()
    try:
        key = mark_key_invalid(key_id=key_id, error=error)
        if key is not None and key.tenant_id is not None:
            raise_alert(
                tenant_id=key.tenant_id,
                end_user_id=key.end_user_id,
                kind=AlertKind.KEY_INVALID,
                dedupe_key=f"key_invalid:{key.pk}:{key.updated_at:%Y%m%d%H%M%S}",
                message=f"{key.provider.name} rejected the key {key.masked}; it was disabled "
                "for routing. Replace it on the keys page.",
            )
        logger.warning("provider_key.rejected_by_provider", extra={"provider_key_id": key_id})
    finally:
        close_old_connections()
