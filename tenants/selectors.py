"""Reads for tenants. Tenant-scoped reads take the tenant; cross-tenant ones say `platform_`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from tenants.models import AuditLog, EndUser, Membership, Tenant, TenantAPIKey


def memberships_of(*, user: Any) -> QuerySet[Membership]:
    return Membership.objects.filter(user=user, tenant__is_active=True).select_related(
        "tenant", "tenant__plan"
    )


def get_membership(*, tenant: Tenant, user: Any) -> Membership:
    return Membership.objects.select_related("tenant").get(tenant=tenant, user=user)


def members(*, tenant: Tenant) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(tenant=tenant).select_related("user").order_by("user__username")
    )


def api_keys(*, tenant: Tenant) -> QuerySet[TenantAPIKey]:
    return TenantAPIKey.objects.filter(tenant=tenant).select_related("end_user")


def get_api_key(*, tenant: Tenant, key_id: int) -> TenantAPIKey:
    return TenantAPIKey.objects.select_related("end_user").get(tenant=tenant, pk=key_id)


def end_users(*, tenant: Tenant) -> QuerySet[EndUser]:
    return EndUser.objects.filter(tenant=tenant)


def get_end_user(*, tenant: Tenant, external_id: str) -> EndUser:
    return EndUser.objects.get(tenant=tenant, external_id=external_id)


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """What an audit-log reader narrows to; empty fields do not filter.

    `action` ending in "." is a prefix ("provider_key." is every key action); `actor` matches
    the label as recorded (a username, `api-key:<prefix>`, `router`, `system`); `since` is
    inclusive and `until` exclusive.
    """

    action: str = ""
    actor: str = ""
    target_type: str = ""
    target_id: str = ""
    since: datetime | None = None
    until: datetime | None = None

    def as_dict(self) -> dict[str, str]:
        """The filters in use, as text (an export's own audit entry names them)."""
        return {
            field.name: value.isoformat() if isinstance(value, datetime) else value
            for field in fields(self)
            if (value := getattr(self, field.name))
        }


def _filtered(entries: QuerySet[AuditLog], filters: AuditFilters | None) -> QuerySet[AuditLog]:
    if filters is None:
        return entries
    if filters.action.endswith("."):
        entries = entries.filter(action__startswith=filters.action)
    elif filters.action:
        entries = entries.filter(action=filters.action)
    if filters.actor:
        entries = entries.filter(actor_label=filters.actor)
    if filters.target_type:
        entries = entries.filter(target_type=filters.target_type)
    if filters.target_id:
        entries = entries.filter(target_id=filters.target_id)
    if filters.since is not None:
        entries = entries.filter(created_at__gte=filters.since)
    if filters.until is not None:
        entries = entries.filter(created_at__lt=filters.until)
    return entries


def audit_entries(*, tenant: Tenant, filters: AuditFilters | None = None) -> QuerySet[AuditLog]:
    """The tenant's audit entries, newest first (platform entries and other tenants' never)."""
    entries = AuditLog.objects.filter(tenant=tenant).select_related("actor", "tenant")
    return _filtered(entries, filters).order_by("-created_at", "-pk")


def platform_audit_entries(
    *, tenant_slug: str = "", filters: AuditFilters | None = None
) -> QuerySet[AuditLog]:
    """Every tenant's and the platform's audit entries, newest first (staff, the export
    command); `tenant_slug` narrows to one tenant."""
    entries = AuditLog.objects.select_related("actor", "tenant")
    if tenant_slug:
        entries = entries.filter(tenant__slug=tenant_slug)
    return _filtered(entries, filters).order_by("-created_at", "-pk")


def platform_active_api_keys() -> QuerySet[TenantAPIKey]:
    """Every unrevoked key with its tenant and plan: what the gateway's snapshot loads."""
    return TenantAPIKey.objects.filter(revoked_at__isnull=True).select_related(
        "tenant", "tenant__plan", "end_user"
    )
