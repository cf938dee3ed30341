"""Reads for routing: the catalog, policies, settings. Cross-tenant reads are `platform_*`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core import signing
from django.db.models import Q, QuerySet

from providers.choices import KeyScope
from providers.models import Provider, ProviderKey
from providers.selectors import platform_routable_keys, providers_for
from routing.choices import ModelMode, PowerLevel
from routing.models import CatalogModel, LLMSettings, RoutingPolicy
from routing.router import ModelOption, Policy, RouteRequest, build_table, route, static_score
from tenants.models import EndUser, Tenant, TenantAPIKey
from tenants.selectors import platform_active_api_keys

if TYPE_CHECKING:
    from routing.gateway.snapshot import Settings

__all__ = [
    "PLAYGROUND_TOKEN_MAX_AGE_SECONDS",
    "PLAYGROUND_TOKEN_PREFIX",
    "PLAYGROUND_TOKEN_SALT",
    "LevelEffect",
    "PowerLevelView",
    "RankedModel",
    "SettingsRow",
    "catalog_models",
    "effective_settings",
    "end_user_settings_rows",
    "get_catalog_model",
    "get_settings_row",
    "keyed_provider_ids",
    "platform_active_api_keys",
    "platform_catalog",
    "platform_configured_end_users",
    "platform_enabled_providers",
    "platform_model_options",
    "platform_routable_models",
    "platform_router_policies",
    "platform_settings_row",
    "platform_tenants",
    "platform_usable_provider_keys",
    "playground_token",
    "power_level_view",
    "routing_policies",
    "tenant_settings_rows",
    "unknown_model_names",
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


# --- the power-level page and the playground: the router's own inputs, for one caller ---------

# Models listed per level on the power-level page.
TOP_MODELS_PER_LEVEL = 5
# The playground's token: `sy-pg-` + a signed {"t": tenant, "u": end user, "x": external id}.
# The gateway (routing/gateway/auth.py) verifies it with the same salt and maximum age.
PLAYGROUND_TOKEN_PREFIX = "sy-pg-"  # noqa: S105 - a label, not a secret
PLAYGROUND_TOKEN_SALT = "switchyard.playground"  # noqa: S105 - a namespace; SECRET_KEY signs
PLAYGROUND_TOKEN_MAX_AGE_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class RankedModel:
    """A model in a level's fallback chain, as the page shows it."""

    name: str
    provider: str
    price_per_1k: float
    score: float
    is_preferred: bool

    @property
    def price(self) -> str:
        return usd_label(self.price_per_1k)


@dataclass(frozen=True, slots=True)
class LevelEffect:
    """What a power level does for one caller right now: its policy and its chain."""

    level: str
    label: str
    description: str
    max_price_per_1k: float
    weight_cost: float
    weight_latency: float
    weight_quality: float
    eligible: int  # models the level may route to for this caller
    providers: tuple[str, ...]  # their providers' names, best first
    top: tuple[RankedModel, ...]
    missing_key: int  # models under the cap that a provider key would add

    @property
    def price_cap(self) -> str:
        return usd_label(self.max_price_per_1k)

    @property
    def more(self) -> int:
        """Eligible models past the top ones: the rest of the fallback chain."""
        return self.eligible - len(self.top)


@dataclass(frozen=True, slots=True)
class PowerLevelView:
    """The three levels' effects for a caller, and the caller's effective settings."""

    levels: tuple[LevelEffect, ...]
    settings: Settings  # the caller's, after inheritance (the gateway's own rule)
    tenant_settings: Settings  # the tenant default, after inheritance
    reachable_models: tuple[str, ...]  # chat models this caller may name explicitly


def usd_label(value: float) -> str:
    """A price per 1K tokens for people: "$0.00025", "$0.01", "$0" (no float noise)."""
    if 0 < value < 0.000001:
        return "< $0.000001"
    return "$" + f"{value:.6f}".rstrip("0").rstrip(".")


def platform_model_options(
    provider_ids: Iterable[int] | None = None,
) -> list[ModelOption]:
    """Routable catalog models as the router sees them: what the gateway's snapshot loads."""
    models = platform_routable_models().select_related("provider")
    if provider_ids is not None:
        models = models.filter(provider_id__in=list(provider_ids))
    return [
        ModelOption(
            id=m.pk,
            name=m.name,
            model_id=m.model_id,
            provider_id=m.provider_id,
            provider_kind=m.provider.kind,
            mode=m.mode,
            input_price=m.input_price_per_mtok,
            output_price=m.output_price_per_mtok,
            cached_price=m.cached_input_price_per_mtok,
            context_window=m.context_window,
            max_output_tokens=m.max_output_tokens,
            supports_tools=m.supports_tools,
            supports_vision=m.supports_vision,
            supports_json=m.supports_json,
            quality=m.quality_score,
            latency_ms=m.observed_latency_ms,
        )
        for m in models
    ]


def _policy(p: RoutingPolicy) -> Policy:
    return Policy(
        level=p.power_level,
        max_price_per_1k=float(p.max_price_per_1k),
        weight_cost=p.weight_cost,
        weight_latency=p.weight_latency,
        weight_quality=p.weight_quality,
        max_latency_ms=float(p.max_latency_ms),
        preferred_kinds=frozenset(p.preferred_provider_kinds or ()),
    )


def platform_router_policies() -> list[Policy]:
    """The routing policies as the router sees them."""
    return [_policy(p) for p in routing_policies()]


def keyed_provider_ids(*, tenant: Tenant, end_user: EndUser | None = None) -> frozenset[int]:
    """Providers with a usable key for the tenant (and end user): the gateway's resolution."""
    owners = Q(scope=KeyScope.TENANT, tenant=tenant)
    if tenant.plan.allows_platform_keys:
        owners |= Q(scope=KeyScope.PLATFORM)
    if end_user is not None:
        owners |= Q(scope=KeyScope.USER, tenant=tenant, end_user=end_user)
    keys = platform_usable_provider_keys().filter(owners).order_by()
    return frozenset(keys.values_list("provider_id", flat=True))


def effective_settings(*, tenant: Tenant, end_user: EndUser | None = None) -> Settings:
    """The settings a request by the tenant (as `end_user`) gets: platform < tenant < user."""
    # The gateway's own inheritance rule; imported here because the snapshot imports this module.
    from routing.gateway.snapshot import Settings

    levels = Q(tenant__isnull=True, end_user__isnull=True) | Q(tenant=tenant, end_user__isnull=True)
    if end_user is not None:
        levels |= Q(tenant=tenant, end_user=end_user)
    rows = {(s.tenant_id, s.end_user_id): _row(s) for s in _settings().filter(levels)}
    inherited = Settings().merged(rows.get((None, None))).merged(rows.get((tenant.pk, None)))
    if end_user is None:
        return inherited
    return inherited.merged(rows.get((tenant.pk, end_user.pk)))


def power_level_view(*, tenant: Tenant, end_user: EndUser | None = None) -> PowerLevelView:
    """Each level's price cap, weights and fallback chain for this caller, ranked by the
    gateway's own router over the gateway's own inputs, so the page cannot disagree with it."""
    keyed = keyed_provider_ids(tenant=tenant, end_user=end_user)
    visible = set(providers_for(tenant=tenant).values_list("pk", flat=True))
    names = dict(Provider.objects.filter(pk__in=visible | keyed).values_list("pk", "name"))
    options = platform_model_options(visible | keyed)
    policy_rows = list(routing_policies())
    table = build_table(options, [_policy(p) for p in policy_rows])
    mine = effective_settings(tenant=tenant, end_user=end_user)
    descriptions = {p.power_level: p.description for p in policy_rows}
    levels = []
    for level in PowerLevel.values:
        policy = table.policies.get(level)
        if policy is None:
            continue
        # An alias request of the caller with an empty prompt: the chain `model: <level>`
        # gets from the gateway, before provider health reorders it.
        chain = route(
            RouteRequest(
                model=level,
                level=mine.power_level,
                keyed_providers=keyed,
                max_output_tokens=mine.default_max_tokens or 0,
                preferred_providers=mine.preferred_providers,
                preferred_models=mine.preferred_models,
            ),
            table,
        )
        providers = tuple(dict.fromkeys(names.get(o.provider_id, "?") for o in chain))
        levels.append(
            LevelEffect(
                level=level,
                label=PowerLevel(level).label,
                description=descriptions.get(level, ""),
                max_price_per_1k=policy.max_price_per_1k,
                weight_cost=policy.weight_cost,
                weight_latency=policy.weight_latency,
                weight_quality=policy.weight_quality,
                eligible=len(chain),
                providers=providers,
                top=tuple(
                    RankedModel(
                        name=o.name,
                        provider=names.get(o.provider_id, "?"),
                        price_per_1k=o.price_per_1k,
                        score=static_score(o, policy),
                        is_preferred=o.provider_id in mine.preferred_providers
                        or o.name in mine.preferred_models,
                    )
                    for o in chain[:TOP_MODELS_PER_LEVEL]
                ),
                missing_key=sum(
                    1
                    for _, o in table.by_level[level]
                    if o.mode == ModelMode.CHAT and o.provider_id not in keyed
                ),
            )
        )
    tenant_settings = effective_settings(tenant=tenant) if end_user is not None else mine
    reachable = sorted(
        {o.name for o in options if o.provider_id in keyed and o.mode == ModelMode.CHAT}
    )
    return PowerLevelView(
        levels=tuple(levels),
        settings=mine,
        tenant_settings=tenant_settings,
        reachable_models=tuple(reachable),
    )


def unknown_model_names(*, tenant: Tenant, names: Iterable[str]) -> list[str]:
    """The `names` that are no routable catalog model of a provider the tenant may use."""
    wanted = list(names)
    known = set(
        platform_routable_models()
        .filter(name__in=wanted, provider__in=providers_for(tenant=tenant))
        .values_list("name", flat=True)
    )
    return [n for n in wanted if n not in known]


def playground_token(*, tenant: Tenant, end_user: EndUser) -> str:
    """A bearer token for the playground: acts as `end_user` of `tenant` for an hour, with
    the completions and models scopes and no API key (its usage has api_key NULL)."""
    payload = {"t": tenant.pk, "u": end_user.pk, "x": end_user.external_id}
    return PLAYGROUND_TOKEN_PREFIX + signing.dumps(payload, salt=PLAYGROUND_TOKEN_SALT)
