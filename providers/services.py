"""Writes for providers and provider keys. Every key change is audited and bumps config."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerError

from config import netguard
from config.logging import redact
from providers import tasks, upstream_hosts
from providers.choices import HealthStatus, KeyScope, KeyStatus
from providers.models import Provider, ProviderHealthCheck, ProviderKey, UpstreamHostAllowance
from providers.presets import preset_for
from tenants import audit, config_version
from tenants.models import EndUser, Tenant

logger = logging.getLogger(__name__)

ERROR_CHARS = 300
# How the audit log names the callers that act with no login user.
ROUTER_LABEL = audit.ROUTER_LABEL
VALIDATION_TASK = "task:providers.validate_provider_key"


def _bump_on_commit(tenant_id: int | None) -> None:
    transaction.on_commit(lambda: config_version.bump(tenant_id=tenant_id))


def create_provider(
    *,
    name: str,
    slug: str,
    kind: str,
    base_url: str = "",
    protocol: str = "",
    options: dict | None = None,
    tenant: Tenant | None = None,
    actor: Any = None,
) -> Provider:
    """A provider of `kind`; protocol and base URL default to the kind's preset."""
    preset = preset_for(kind)
    provider = Provider(
        name=name,
        slug=slug,
        kind=kind,
        protocol=protocol or preset.protocol,
        base_url=(base_url or preset.base_url).rstrip("/"),
        options=options or {},
        tenant=tenant,
    )
    provider.full_clean()
    upstream_hosts.check_base_url(provider.base_url, tenant_endpoint=tenant is not None)
    with transaction.atomic():
        provider.save()
        audit.record(actor=actor, tenant=tenant, action="provider.created", target=provider)
        _bump_on_commit(tenant.pk if tenant else None)
    return provider


def add_provider_key(
    *,
    provider: Provider,
    secret: str,
    actor: Any = None,
    tenant: Tenant | None = None,
    end_user: EndUser | None = None,
    label: str = "",
    status: str = KeyStatus.PENDING,
    validate_later: bool = True,
) -> ProviderKey:
    """Store a key for `provider` at platform (no tenant), tenant or end-user scope, encrypted;
    it is validated in the background unless the caller just checked it live."""
    secret = secret.strip()
    if not secret:
        raise ValueError("The key is empty.")
    if end_user is not None and (tenant is None or end_user.tenant_id != tenant.pk):
        raise ValueError("The end user belongs to another tenant.")
    scope = KeyScope.USER if end_user else KeyScope.TENANT if tenant else KeyScope.PLATFORM
    key = ProviderKey(
        provider=provider, scope=scope, tenant=tenant, end_user=end_user, label=label, status=status
    )
    key.set_secret(secret)
    key.full_clean()
    with transaction.atomic():
        key.save()
        audit.record(
            actor=actor,
            tenant=tenant,
            action="provider_key.added",
            target=key,
            changes={"provider": provider.slug, "scope": scope, "key": key.masked},
        )
        _bump_on_commit(tenant.pk if tenant else None)
        if validate_later:
            transaction.on_commit(lambda: enqueue_key_validation(key_id=key.pk))
    return key


def replace_provider_key_secret(
    *, key: ProviderKey, secret: str, actor: Any = None, validate_later: bool = True
) -> ProviderKey:
    """Swap the secret of `key`; it is pending validation again (queued in the background)."""
    secret = secret.strip()
    if not secret:
        raise ValueError("The key is empty.")
    old = key.masked
    key.set_secret(secret)
    key.status = KeyStatus.PENDING
    key.last_error = ""
    with transaction.atomic():
        key.save()
        audit.record(
            actor=actor,
            tenant=key.tenant,
            action="provider_key.replaced",
            target=key,
            changes={"key": [old, key.masked]},
        )
        _bump_on_commit(key.tenant_id)
        if validate_later:
            transaction.on_commit(lambda: enqueue_key_validation(key_id=key.pk))
    return key


def set_provider_key_enabled(*, key: ProviderKey, enabled: bool, actor: Any = None) -> ProviderKey:
    """Enable or disable `key` for routing."""
    if key.is_enabled != enabled:
        key.is_enabled = enabled
        with transaction.atomic():
            key.save(update_fields=["is_enabled", "updated_at"])
            audit.record(
                actor=actor,
                tenant=key.tenant,
                action="provider_key.enabled" if enabled else "provider_key.disabled",
                target=key,
            )
            _bump_on_commit(key.tenant_id)
    return key


def delete_provider_key(*, key: ProviderKey, actor: Any = None) -> None:
    """Delete `key` (the audit entry keeps its mask, never the secret)."""
    tenant = key.tenant
    with transaction.atomic():
        audit.record(
            actor=actor,
            tenant=tenant,
            action="provider_key.deleted",
            target=key,
            changes={"key": key.masked},
        )
        key.delete()
        _bump_on_commit(tenant.pk if tenant else None)


def record_key_validation(
    *,
    key: ProviderKey,
    ok: bool,
    error: str = "",
    actor: Any = None,
    actor_label: str = "",
    now=None,
) -> ProviderKey:
    """Store the outcome of a live check of `key`; an invalid key leaves routing.

    `actor_label` names a caller with no login user (the router, the validation task)."""
    now = now or timezone.now()
    key.last_validated_at = now
    key.status = KeyStatus.ACTIVE if ok else KeyStatus.INVALID
    key.last_error = "" if ok else error[:ERROR_CHARS]
    with transaction.atomic():
        key.save(update_fields=["last_validated_at", "status", "last_error", "updated_at"])
        audit.record(
            actor=actor,
            tenant=key.tenant,
            action="provider_key.validated" if ok else "provider_key.validation_failed",
            target=key,
            changes={} if ok else {"error": key.last_error},
            actor_label=actor_label,
        )
        _bump_on_commit(key.tenant_id)
    return key


def mark_key_invalid(*, key_id: int, error: str) -> ProviderKey | None:
    """The router saw a 401/403 with this key: take it out of routing (idempotent)."""
    key = ProviderKey.objects.select_related("tenant").filter(pk=key_id).first()
    if key is None or key.status == KeyStatus.INVALID:
        return None
    return record_key_validation(key=key, ok=False, error=error, actor_label=ROUTER_LABEL)


def stamp_keys_used(*, last_used: dict[int, datetime]) -> None:
    """Record when keys were last used (batched by the usage writer, not per request)."""
    for pk, at in last_used.items():
        ProviderKey.objects.filter(pk=pk).update(last_used_at=at)


# --- health checks ---------------------------------------------------------------------------

# A week of history answers "since when is it failing?" and costs ~10K rows per provider.
HEALTH_HISTORY = timedelta(days=7)


def record_health_check(
    *, provider: Provider, ok: bool, latency_ms: int | None, error: str, now: datetime
) -> ProviderHealthCheck:
    """Store one check of `provider` and move its health: healthy on success, degraded after a
    failure, down after SWITCHYARD_COOLDOWN_FAILURES in a row. Updates `provider` in place.

    No config bump: routing reads cool-downs from Redis, not these fields.
    """
    error = "" if ok else redact(error)[:ERROR_CHARS]
    with transaction.atomic():
        # Locked: the periodic check and the admin's "run now" may record at the same time.
        row = Provider.objects.select_for_update().get(pk=provider.pk)
        failures = 0 if ok else row.consecutive_failures + 1
        if ok:
            status = HealthStatus.HEALTHY
        elif failures >= settings.SWITCHYARD_COOLDOWN_FAILURES:
            status = HealthStatus.DOWN
        else:
            status = HealthStatus.DEGRADED
        check = ProviderHealthCheck.objects.create(
            provider=row, checked_at=now, ok=ok, latency_ms=latency_ms, error=error
        )
        Provider.objects.filter(pk=row.pk).update(
            health_status=status,
            health_checked_at=now,
            health_latency_ms=latency_ms,
            health_error=error,
            consecutive_failures=failures,
        )
    provider.health_status = status
    provider.health_checked_at = now
    provider.health_latency_ms = latency_ms
    provider.health_error = error
    provider.consecutive_failures = failures
    return check


def prune_health_checks(*, now: datetime, batch_size: int) -> int:
    """Delete checks older than HEALTH_HISTORY, `batch_size` rows per statement; the count."""
    cutoff = now - HEALTH_HISTORY
    deleted = 0
    # Per provider, so every batch is a range scan of the (provider, checked_at) index.
    for provider_id in Provider.objects.values_list("pk", flat=True):
        old = ProviderHealthCheck.objects.filter(provider_id=provider_id, checked_at__lt=cutoff)
        while ids := list(old.order_by("checked_at").values_list("pk", flat=True)[:batch_size]):
            deleted += ProviderHealthCheck.objects.filter(pk__in=ids).delete()[0]
    return deleted


# --- key validation in the background ------------------------------------------------------


def enqueue_key_validation(*, key_id: int) -> None:
    """Queue a live check of key `key_id`. Call from transaction.on_commit.

    A broker outage must not fail the request that saved the key: the key stays pending
    (usable) and the daily validate_active_keys run checks it.
    """
    try:
        tasks.validate_provider_key.delay(key_id)
    except BrokerError:
        logger.warning("provider_key.validation_not_queued", extra={"provider_key_id": key_id})


def settle_key_validation(
    *,
    key_id: int,
    secret: str,
    ok: bool,
    error: str,
    now: datetime,
    on_invalid: Callable[[ProviderKey], None] | None = None,
) -> ProviderKey | None:
    """Record a background check of key `key_id` made with `secret`; None when skipped.

    Skipped when the key is gone, already invalid or disabled, or its secret was replaced
    since (the new secret has its own check queued). `on_invalid(key)` runs in the same
    transaction when this check took the key out of routing, so a retried task neither
    loses nor repeats it.
    """
    with transaction.atomic():
        key = (
            ProviderKey.objects.select_for_update(of=("self",))
            .select_related("provider")
            .filter(pk=key_id)
            .first()
        )
        if key is None or key.status in (KeyStatus.INVALID, KeyStatus.DISABLED):
            return None
        if not hmac.compare_digest(key.reveal_secret().encode(), secret.encode()):
            return None
        record_key_validation(key=key, ok=ok, error=error, now=now, actor_label=VALIDATION_TASK)
        if not ok and on_invalid is not None:
            on_invalid(key)
    return key


# --- keys checked live before saving (the keys page) ---------------------------------------


def record_refused_key_check(
    *,
    tenant: Tenant,
    provider: Provider,
    error: str,
    status: int | None = None,
    actor: Any = None,
    key: ProviderKey | None = None,
) -> None:
    """A key offered on the keys page or the API failed its live check and was not stored
    (or, with `key`, did not replace that key's secret). Nothing changed, but a run of
    refused keys is worth seeing; the error never holds the key (validation scrubs it)."""
    audit.record(
        actor=actor,
        tenant=tenant,
        action="provider_key.check_refused",
        target=key,
        changes={"provider": provider.slug, "status": status, "error": error[:ERROR_CHARS]},
    )


def add_checked_provider_key(
    *,
    provider: Provider,
    secret: str,
    tenant: Tenant,
    actor: Any = None,
    end_user: EndUser | None = None,
    label: str = "",
    now: datetime | None = None,
) -> ProviderKey:
    """Store a key a live check has just accepted: active at once, both steps audited.

    The caller validated `secret` (providers.validation); a refused key is never stored.
    """
    with transaction.atomic():
        key = add_provider_key(
            provider=provider,
            secret=secret,
            actor=actor,
            tenant=tenant,
            end_user=end_user,
            label=label,
            validate_later=False,  # just checked live; a second request would only cost
        )
        return record_key_validation(key=key, ok=True, actor=actor, now=now)


def replace_checked_provider_key_secret(
    *, key: ProviderKey, secret: str, actor: Any = None, now: datetime | None = None
) -> ProviderKey:
    """Swap in a secret a live check has just accepted: the key is active again."""
    with transaction.atomic():
        replace_provider_key_secret(key=key, secret=secret, actor=actor, validate_later=False)
        return record_key_validation(key=key, ok=True, actor=actor, now=now)


# --- the management API's small writes (labels; staff's provider edits) ----------------------

# Provider fields staff change through the API; kind and protocol define the adapter and
# are chosen once, at creation.
EDITABLE_PROVIDER_FIELDS = frozenset({"name", "base_url", "options", "is_enabled"})


def rename_provider_key(*, key: ProviderKey, label: str, actor: Any = None) -> ProviderKey:
    """Change `key`'s label. Audited; no config bump: routing never reads labels."""
    old = key.label
    if old == label:
        return key
    key.label = label
    key.full_clean(exclude=["secret"])
    with transaction.atomic():
        key.save(update_fields=["label", "updated_at"])
        audit.record(
            actor=actor,
            tenant=key.tenant,
            action="provider_key.renamed",
            target=key,
            changes={"label": [old, label]},
        )
    return key


def update_provider(*, provider: Provider, actor: Any = None, **fields: Any) -> Provider:
    """Change a provider's name, base URL, options or enabled flag; audited, config bumped.

    Raises ValidationError (by field) and saves nothing when a value is invalid.
    """
    unknown = set(fields) - EDITABLE_PROVIDER_FIELDS
    if unknown:
        raise TypeError(f"Unknown provider fields: {', '.join(sorted(unknown))}.")
    if "base_url" in fields:
        fields["base_url"] = fields["base_url"].rstrip("/")
    changes = {}
    for name, value in fields.items():
        old = getattr(provider, name)
        if old != value:
            changes[name] = [old, value]
            setattr(provider, name, value)
    if not changes:
        return provider
    provider.full_clean()
    if "base_url" in changes:
        upstream_hosts.check_base_url(
            provider.base_url, tenant_endpoint=provider.tenant_id is not None
        )
    with transaction.atomic():
        provider.save(update_fields=[*changes])
        audit.record(
            actor=actor,
            tenant=provider.tenant,
            action="provider.updated",
            target=provider,
            changes=changes,
        )
        _bump_on_commit(provider.tenant_id)
    return provider


def allow_upstream_host(*, host: str, note: str = "", actor: Any = None) -> UpstreamHostAllowance:
    """Let platform providers on `host` skip the SSRF guard (idempotent); audited, config
    bumped. Staff normally do this in the admin; seed_demo does it for the simulator."""
    with transaction.atomic():
        allowance, created = UpstreamHostAllowance.objects.get_or_create(
            host=netguard.normalize_host(host), defaults={"note": note}
        )
        if created:
            audit.record(actor=actor, tenant=None, action="upstream_host.created", target=allowance)
            _bump_on_commit(None)
    return allowance
