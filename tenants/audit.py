"""The audit log's one writer: every app records through here.

Who and what are the caller's arguments. Where from (the client address and user agent) is
the request's: `tenants.middleware.AuditOriginMiddleware` puts it in a context variable for
the length of each page, management-API and admin request, so services record it without
every signature carrying it. Tasks and commands run outside a request and record none.
"""

from __future__ import annotations

import contextvars
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.apps import apps
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, models, transaction

from config.client_ip import client_address
from config.logging import redact
from tenants.models import AuditLog, Tenant

logger = logging.getLogger(__name__)

# Enough to tell browsers, SDKs and scripts apart; the rest of a user agent is noise.
USER_AGENT_CHARS = 200
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]+")


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request came from, as the audit log keeps it."""

    ip_address: str | None = None
    user_agent: str = ""


_origin: contextvars.ContextVar[Origin | None] = contextvars.ContextVar(
    "audit_origin", default=None
)


def clean_user_agent(value: str | None) -> str:
    """A user agent without control characters (no forged log lines), trimmed."""
    return _CONTROL_CHARS.sub(" ", value or "").strip()[:USER_AGENT_CHARS]


def origin_of(request: Any) -> Origin:
    """The client address (trusted-proxy rule, config/client_ip.py) and user agent."""
    return Origin(
        ip_address=client_address(request),
        user_agent=clean_user_agent(request.META.get("HTTP_USER_AGENT")),
    )


@contextmanager
def acting_from(origin: Origin | None) -> Iterator[None]:
    """Entries recorded inside are stamped with `origin` (unless the caller passes one)."""
    token = _origin.set(origin)
    try:
        yield
    finally:
        _origin.reset(token)


def current_origin() -> Origin | None:
    return _origin.get()


def _without_secrets(value: Any) -> Any:
    """`value` with key-shaped strings redacted: callers pass masked values, and this makes
    sure a mistake does not put a key in a table that is exported and shown to tenants."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _without_secrets(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_without_secrets(v) for v in value]
    return value


def record(
    *,
    action: str,
    actor: Any = None,
    tenant: Tenant | None = None,
    target: models.Model | None = None,
    changes: Mapping[str, Any] | None = None,
    ip_address: str | None = None,
    user_agent: str | None = None,
    actor_label: str = "",
) -> AuditLog:
    """Append one entry. `changes` must hold no secret (callers pass masked values).

    `actor` is a login user, or any object with `get_username()` (an API key acting through
    the management API is labelled, not linked), or None for the system. The address and
    user agent default to the current request's (see `acting_from`).
    """
    origin = current_origin()
    if ip_address is None and user_agent is None and origin is not None:
        ip_address, user_agent = origin.ip_address, origin.user_agent
    is_user = isinstance(actor, AbstractBaseUser) and actor.is_authenticated
    named = actor is not None and hasattr(actor, "get_username")
    entry = AuditLog.objects.create(
        action=action,
        actor=actor if is_user else None,
        actor_label=(actor_label or (actor.get_username() if named else "system"))[:150],
        tenant=tenant,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_repr=str(target)[:200] if target is not None else "",
        changes=_without_secrets(dict(changes or {})),
        ip_address=ip_address,
        user_agent=clean_user_agent(user_agent),
    )
    logger.debug("audit.%s", action, extra={"tenant_id": getattr(tenant, "pk", None)})
    return entry


# --- the router's use of provider keys, sampled ------------------------------------------

KEY_USED = "provider_key.used"
# One entry per key per hour says "this key was in use then" without a row per request.
KEY_USE_SAMPLE_INTERVAL = timedelta(hours=1)
KEY_TARGET_TYPE = "providers.providerkey"
ROUTER_LABEL = "router"
# Any constant; it names the lock that makes the check-then-insert below one writer at a
# time across processes (two usage writers flushing at once would both see no entry).
_KEY_USE_LOCK_ID = 0x5359_4B55  # "SYKU"


def record_keys_used(uses: Iterable[tuple[int | None, int | None]], now: datetime) -> int:
    """Note that the router used these provider keys: at most one `provider_key.used` entry
    per key per hour, whichever process sees the use first. Returns how many were written.

    `uses` are (tenant_id, provider_key_id) pairs from a batch of usage records; repeats are
    expected. The entry belongs to the key's tenant (a platform key's to none, so that one
    tenant's use is not shown to another). Keys deleted since are skipped. One lookup of the
    batch's keys per call; call it once per usage batch, after the batch is stored.
    """
    counts = Counter(key_id for _, key_id in uses if key_id is not None)
    if not counts:
        return 0
    since = now - KEY_USE_SAMPLE_INTERVAL
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # SQLite (the embedded default) already runs one writer at a time.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_KEY_USE_LOCK_ID])
        recent = set(
            AuditLog.objects.filter(
                target_type=KEY_TARGET_TYPE,
                target_id__in=[str(key_id) for key_id in counts],
                created_at__gt=since,
                action=KEY_USED,
            ).values_list("target_id", flat=True)
        )
        due = [key_id for key_id in counts if str(key_id) not in recent]
        if not due:
            return 0
        # By name, not import: tenants sits below providers (STYLE §1).
        provider_key = apps.get_model("providers", "ProviderKey")
        keys = provider_key.objects.select_related("provider").filter(pk__in=due)
        entries = [
            AuditLog(
                created_at=now,
                action=KEY_USED,
                actor_label=ROUTER_LABEL,
                tenant_id=key.tenant_id,
                target_type=KEY_TARGET_TYPE,
                target_id=str(key.pk),
                target_repr=str(key)[:200],
                changes={"uses_in_batch": counts[key.pk]},
            )
            for key in keys
        ]
        AuditLog.objects.bulk_create(entries)
    return len(entries)


__all__ = [
    "KEY_USED",
    "Origin",
    "acting_from",
    "clean_user_agent",
    "current_origin",
    "origin_of",
    "record",
    "record_keys_used",
]
