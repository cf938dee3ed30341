"""Reads for tenants. Tenant-scoped reads take the tenant; cross-tenant ones say `platform_`."""

from __future__ import annotations

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


def audit_entries(*, tenant: Tenant) -> QuerySet[AuditLog]:
    return AuditLog.objects.filter(tenant=tenant).select_related("actor")


def platform_active_api_keys() -> QuerySet[TenantAPIKey]:
    """Every unrevoked key with its tenant and plan: what the gateway's snapshot loads."""
    return TenantAPIKey.objects.filter(revoked_at__isnull=True).select_related(
        "tenant", "tenant__plan", "end_user"
    )
