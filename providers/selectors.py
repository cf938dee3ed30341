"""Reads for providers and keys. Tenant-scoped reads take the tenant."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from providers.choices import KeyScope
from providers.models import Provider, ProviderKey
from tenants.models import EndUser, Tenant


def providers_for(*, tenant: Tenant) -> QuerySet[Provider]:
    """Enabled platform providers plus the tenant's own custom endpoints."""
    return Provider.objects.filter(Q(tenant__isnull=True) | Q(tenant=tenant), is_enabled=True)


def provider_keys(*, tenant: Tenant, end_user: EndUser | None = None) -> QuerySet[ProviderKey]:
    """The tenant's own keys, and the end user's when given (never another tenant's)."""
    scope = Q(scope=KeyScope.TENANT)
    if end_user is not None:
        scope |= Q(scope=KeyScope.USER, end_user=end_user)
    return ProviderKey.objects.filter(scope, tenant=tenant).select_related("provider", "end_user")


def get_provider_key(*, tenant: Tenant, key_id: int) -> ProviderKey:
    """The tenant's key, or ProviderKey.DoesNotExist (another tenant's key does not exist)."""
    return ProviderKey.objects.select_related("provider", "end_user").get(tenant=tenant, pk=key_id)


def platform_providers() -> QuerySet[Provider]:
    return Provider.objects.filter(tenant__isnull=True)


def platform_keys() -> QuerySet[ProviderKey]:
    return ProviderKey.objects.filter(scope=KeyScope.PLATFORM).select_related("provider")


def platform_routable_keys() -> QuerySet[ProviderKey]:
    """Every enabled key of an enabled provider, every scope: the gateway snapshot's input."""
    return ProviderKey.objects.filter(is_enabled=True, provider__is_enabled=True).select_related(
        "provider"
    )
