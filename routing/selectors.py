"""Reads for routing: the catalog, policies, settings. Cross-tenant reads are `platform_*`."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from providers.models import Provider, ProviderKey
from providers.selectors import platform_routable_keys
from routing.models import CatalogModel, LLMSettings, RoutingPolicy
from tenants.models import EndUser, Tenant, TenantAPIKey
from tenants.selectors import platform_active_api_keys

__all__ = [
    "SettingsRow",
    "catalog_models",
    "end_user_settings_rows",
    "get_catalog_model",
    "platform_active_api_keys",
    "platform_catalog",
    "platform_configured_end_users",
    "platform_enabled_providers",
    "platform_routable_models",
    "platform_settings_row",
    "platform_tenants",
    "platform_usable_provider_keys",
    "routing_policies",
    "tenant_settings_rows",
]


@dataclass(frozen=True, slots=True)
class SettingsRow:
    """One level's LLM settings as plain data; empty fields inherit."""

    power_level: str
    auto_failover: bool | None
    default_temperature: float | None
    default_max_tokens: int | None
    system_prompt: str
    preferred_providers: frozenset[int]
    preferred_models: frozenset[str]


def _row(s: LLMSettings) -> SettingsRow:
    return SettingsRow(
        power_level=s.power_level,
        auto_failover=s.auto_failover,
        default_temperature=s.default_temperature,
        default_max_tokens=s.default_max_tokens,
        system_prompt=s.system_prompt,
        preferred_providers=frozenset(p.pk for p in s.preferred_providers.all()),
        preferred_models=frozenset(s.preferred_models or ()),
    )


def _settings() -> QuerySet[LLMSettings]:
    return LLMSettings.objects.prefetch_related("preferred_providers")


def platform_settings_row() -> SettingsRow | None:
    row = _settings().filter(tenant__isnull=True, end_user__isnull=True).order_by("pk").first()
    return _row(row) if row else None


def tenant_settings_rows() -> dict[int, SettingsRow]:
    rows = _settings().filter(tenant__isnull=False, end_user__isnull=True)
    return {s.tenant_id: _row(s) for s in rows}


def end_user_settings_rows() -> dict[int, SettingsRow]:
    return {s.end_user_id: _row(s) for s in _settings().filter(end_user__isnull=False)}


def get_settings_row(*, tenant: Tenant, end_user: EndUser | None = None) -> LLMSettings | None:
    """The tenant's (or the end user's) own settings row, if any."""
    return _settings().filter(tenant=tenant, end_user=end_user).first()


def platform_tenants() -> QuerySet[Tenant]:
    return Tenant.objects.select_related("plan")


def platform_configured_end_users() -> QuerySet[EndUser]:
    """End users the gateway must know by id: those with own keys, settings or bound keys."""
    with_keys = ProviderKey.objects.filter(end_user__isnull=False).values("end_user_id")
    with_settings = LLMSettings.objects.filter(end_user__isnull=False).values("end_user_id")
    bound = TenantAPIKey.objects.filter(end_user__isnull=False).values("end_user_id")
    # Three IN subqueries rather than a UNION: SQLite refuses the models' default ORDER BY
    # inside a compound statement.
    return EndUser.objects.filter(Q(pk__in=with_keys) | Q(pk__in=with_settings) | Q(pk__in=bound))


def platform_enabled_providers() -> QuerySet[Provider]:
    return Provider.objects.filter(is_enabled=True)


def platform_usable_provider_keys() -> QuerySet[ProviderKey]:
    """Enabled, not invalid keys of enabled providers, oldest first."""
    return platform_routable_keys().exclude(status="invalid").order_by("created_at", "pk")


def platform_routable_models() -> QuerySet[CatalogModel]:
    """Enabled models of enabled providers; deprecated ones (gone upstream) are not routed."""
    return CatalogModel.objects.filter(
        is_enabled=True, is_deprecated=False, provider__is_enabled=True
    )


def routing_policies() -> QuerySet[RoutingPolicy]:
    return RoutingPolicy.objects.all()


def catalog_models(
    *, provider: Provider | None = None, enabled: bool | None = None
) -> QuerySet[CatalogModel]:
    """Catalog models with their provider joined; of one provider, enabled or not if given."""
    models = CatalogModel.objects.select_related("provider")
    if provider is not None:
        models = models.filter(provider=provider)
    if enabled is not None:
        models = models.filter(is_enabled=enabled)
    return models


def platform_catalog() -> QuerySet[CatalogModel]:
    """Every model of the platform providers (no tenant's custom endpoint), provider joined."""
    return catalog_models().filter(provider__tenant__isnull=True)


def get_catalog_model(*, provider: Provider, model_id: str) -> CatalogModel:
    """`provider`'s model `model_id` (the provider's own id), or CatalogModel.DoesNotExist."""
    return catalog_models(provider=provider).get(model_id=model_id)
