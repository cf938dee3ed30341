"""Writes for providers and provider keys. Every key change is audited and bumps config."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from providers.choices import KeyScope, KeyStatus
from providers.models import Provider, ProviderKey
from providers.presets import preset_for
from tenants import audit, config_version
from tenants.models import EndUser, Tenant

ERROR_CHARS = 300


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
) -> ProviderKey:
    """Store a key for `provider` at platform (no tenant), tenant or end-user scope, encrypted."""
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
    return key


def replace_provider_key_secret(*, key: ProviderKey, secret: str, actor: Any = None) -> ProviderKey:
    """Swap the secret of `key`; it is pending validation again."""
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
    *, key: ProviderKey, ok: bool, error: str = "", actor: Any = None, now=None
) -> ProviderKey:
    """Store the outcome of a live check of `key`; an invalid key leaves routing."""
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
        )
        _bump_on_commit(key.tenant_id)
    return key


def mark_key_invalid(*, key_id: int, error: str) -> ProviderKey | None:
    """The router saw a 401/403 with this key: take it out of routing (idempotent)."""
    key = ProviderKey.objects.select_related("tenant").filter(pk=key_id).first()
    if key is None or key.status == KeyStatus.INVALID:
        return None
    return record_key_validation(key=key, ok=False, error=error)


def stamp_keys_used(*, last_used: dict[int, datetime]) -> None:
    """Record when keys were last used (batched by the usage writer, not per request)."""
    for pk, at in last_used.items():
        ProviderKey.objects.filter(pk=pk).update(last_used_at=at)
