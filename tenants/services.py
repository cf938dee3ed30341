"""Writes for tenants, members, end users and API keys."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from cryptography.fernet import InvalidToken
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from tenants import audit, config_version, crypto
from tenants.choices import DEFAULT_SCOPES, Role, Scope
from tenants.models import EndUser, Membership, Plan, Tenant, TenantAPIKey


class InvalidScope(ValueError):
    pass


def _bump_on_commit(tenant: Tenant | None) -> None:
    tenant_id = tenant.pk if tenant else None
    transaction.on_commit(lambda: config_version.bump(tenant_id=tenant_id))


def create_tenant(*, name: str, slug: str, plan: Plan, actor: Any = None) -> Tenant:
    """A new tenant on `plan`."""
    tenant = Tenant(name=name, slug=slug, plan=plan)
    tenant.full_clean()
    with transaction.atomic():
        tenant.save()
        audit.record(actor=actor, tenant=tenant, action="tenant.created", target=tenant)
    return tenant


def update_tenant(*, tenant: Tenant, actor: Any = None, **fields: Any) -> Tenant:
    """Change plan, status or billing fields of a tenant; audited, config bumped."""
    changes = {}
    for name, value in fields.items():
        old = getattr(tenant, name)
        if old != value:
            changes[name] = [str(old), str(value)]
            setattr(tenant, name, value)
    tenant.full_clean()
    with transaction.atomic():
        tenant.save()
        if changes:
            audit.record(
                actor=actor, tenant=tenant, action="tenant.updated", target=tenant, changes=changes
            )
        _bump_on_commit(tenant)
    return tenant


def add_member(*, tenant: Tenant, user: Any, role: str, actor: Any = None) -> Membership:
    """Give `user` a role in `tenant` (or change it)."""
    with transaction.atomic():
        membership, created = Membership.objects.update_or_create(
            tenant=tenant, user=user, defaults={"role": role}
        )
        audit.record(
            actor=actor,
            tenant=tenant,
            action="member.added" if created else "member.changed",
            target=membership,
            changes={"role": role},
        )
    return membership


def get_or_create_end_user(*, tenant: Tenant, external_id: str) -> EndUser:
    """The tenant's end user named `external_id`, created on first sight (race-safe)."""
    try:
        return EndUser.objects.get(tenant=tenant, external_id=external_id)
    except EndUser.DoesNotExist:
        pass
    try:
        with transaction.atomic():
            return EndUser.objects.create(tenant=tenant, external_id=external_id)
    except IntegrityError:
        return EndUser.objects.get(tenant=tenant, external_id=external_id)


def end_user_for_login(*, tenant: Tenant, user: Any) -> EndUser:
    """The end-user profile of a tenant member (their own keys and settings hang off it)."""
    profile = EndUser.objects.filter(tenant=tenant, user=user).first()
    if profile:
        return profile
    external_id = f"user:{user.get_username()}"
    try:
        with transaction.atomic():
            profile, _ = EndUser.objects.get_or_create(tenant=tenant, external_id=external_id)
            if profile.user_id is None:
                profile.user = user
                profile.save(update_fields=["user"])
    except IntegrityError:
        profile = EndUser.objects.get(tenant=tenant, user=user)
    return profile


def create_api_key(
    *,
    tenant: Tenant,
    name: str,
    actor: Any = None,
    scopes: Sequence[str] | None = None,
    end_user: EndUser | None = None,
    requests_per_minute: int | None = None,
) -> tuple[TenantAPIKey, str]:
    """A new key for `tenant`; returns the row and the raw key, which is never stored."""
    scopes = list(DEFAULT_SCOPES if scopes is None else scopes)
    unknown = set(scopes) - set(Scope.values)
    if unknown:
        raise InvalidScope(f"Unknown scopes: {', '.join(sorted(unknown))}.")
    if end_user is not None and end_user.tenant_id != tenant.pk:
        raise ValueError("The end user belongs to another tenant.")
    raw = TenantAPIKey.generate()
    key = TenantAPIKey(
        tenant=tenant,
        name=name,
        scopes=scopes,
        end_user=end_user,
        requests_per_minute=requests_per_minute,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    key.set_key(raw)
    key.full_clean()
    with transaction.atomic():
        key.save()
        audit.record(
            actor=actor,
            tenant=tenant,
            action="api_key.created",
            target=key,
            changes={"scopes": scopes},
        )
        _bump_on_commit(tenant)
    return key, raw


def revoke_api_key(*, key: TenantAPIKey, actor: Any = None) -> TenantAPIKey:
    """Revoke `key`; its next request is refused on every process within a poll interval."""
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        with transaction.atomic():
            key.save(update_fields=["revoked_at"])
            audit.record(actor=actor, tenant=key.tenant, action="api_key.revoked", target=key)
            _bump_on_commit(key.tenant)
    return key


def create_user(*, username: str, password: str, email: str = "", is_staff: bool = False) -> Any:
    """A login user (get or create; the password is set either way)."""
    User = get_user_model()
    user, _ = User.objects.get_or_create(username=username, defaults={"email": email})
    user.set_password(password)
    user.is_staff = is_staff
    user.is_superuser = is_staff
    user.email = email or user.email
    user.save()
    return user


# Rows read, re-encrypted and written per transaction: short transactions, few round trips.
ROTATION_BATCH_SIZE = 500
logger = logging.getLogger(__name__)


def rotate_encryption_keys(
    *,
    actor: Any = None,
    dry_run: bool = False,
    batch_size: int = ROTATION_BATCH_SIZE,
    report: Callable[[str, int, int], None] | None = None,
) -> int:
    """Re-encrypt every stored secret with the newest key; returns how many were rewritten.

    Values the newest key already opens are left alone, so a second run rewrites nothing.
    Each write is a compare-and-swap on the old ciphertext: a secret replaced meanwhile is
    not overwritten. `report(label, rewritten, unreadable)` is called once per field.
    """
    newest = crypto.fernet(crypto.configured_keys()[:1])
    total = 0
    for model, field_name in crypto.encrypted_fields():
        manager = model._base_manager
        rewritten = unreadable = 0
        last_pk = None
        while True:
            rows = manager.exclude(**{f"{field_name}__isnull": True}).exclude(**{field_name: ""})
            if last_pk is not None:
                rows = rows.filter(pk__gt=last_pk)
            batch = list(rows.order_by("pk").values_list("pk", field_name)[:batch_size])
            if not batch:
                break
            last_pk = batch[-1][0]
            with transaction.atomic():
                for pk, sealed in batch:
                    try:
                        newest.decrypt(sealed.ciphertext.encode())
                        continue  # already under the newest key
                    except InvalidToken:
                        pass
                    try:
                        token = crypto.rotate(sealed.ciphertext)
                    except crypto.DecryptionError:
                        unreadable += 1
                        logger.warning(
                            "encryption.rotate_unreadable",
                            extra={"model": model._meta.label, "field": field_name, "pk": pk},
                        )
                        continue
                    if dry_run:
                        rewritten += 1
                        continue
                    rewritten += manager.filter(pk=pk, **{field_name: sealed}).update(
                        **{field_name: crypto.SealedSecret(token)}
                    )
        if report is not None:
            report(f"{model._meta.label}.{field_name}", rewritten, unreadable)
        total += rewritten
    if total and not dry_run:
        with transaction.atomic():
            audit.record(
                actor=actor, action="encryption_keys.rotated", changes={"rewritten": total}
            )
            transaction.on_commit(lambda: config_version.bump())
    return total


__all__ = [
    "InvalidScope",
    "Role",
    "add_member",
    "create_api_key",
    "create_tenant",
    "create_user",
    "end_user_for_login",
    "get_or_create_end_user",
    "revoke_api_key",
    "rotate_encryption_keys",
    "update_tenant",
]
