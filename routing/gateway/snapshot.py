"""The configuration snapshot: everything a request needs, loaded once per config version.

Built synchronously (ORM, in a worker thread) when the config version changes, then read by
every request without I/O. Provider secrets are decrypted here, once, and live only in this
process's memory.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from config import netguard
from providers import upstream_hosts
from providers.choices import KeyScope
from routing import selectors
from routing.choices import DEFAULT_POWER_LEVEL
from routing.router import ModelOption, RoutingTable, build_table
from tenants.crypto import DecryptionError
from usage import selectors as usage_selectors
from usage.choices import CapMode, CapScope, KeySource
from usage.limiter import to_units

logger = logging.getLogger(__name__)

KEY_SOURCE = {
    KeyScope.PLATFORM: KeySource.PLATFORM,
    KeyScope.TENANT: KeySource.TENANT,
    KeyScope.USER: KeySource.USER,
}


@dataclass(frozen=True, slots=True)
class Settings:
    """Effective LLM settings after inheritance (platform < tenant < user)."""

    power_level: str = DEFAULT_POWER_LEVEL
    auto_failover: bool = True
    default_temperature: float | None = None
    default_max_tokens: int | None = None
    system_prompt: str = ""
    preferred_providers: frozenset[int] = frozenset()
    preferred_models: frozenset[str] = frozenset()

    def merged(self, row: selectors.SettingsRow | None) -> Settings:
        """These settings overridden by the non-empty fields of `row`."""
        if row is None:
            return self
        return Settings(
            power_level=row.power_level or self.power_level,
            auto_failover=self.auto_failover if row.auto_failover is None else row.auto_failover,
            default_temperature=(
                self.default_temperature
                if row.default_temperature is None
                else row.default_temperature
            ),
            default_max_tokens=row.default_max_tokens or self.default_max_tokens,
            system_prompt=row.system_prompt or self.system_prompt,
            preferred_providers=row.preferred_providers or self.preferred_providers,
            preferred_models=row.preferred_models or self.preferred_models,
        )


@dataclass(frozen=True, slots=True)
class CapInfo:
    amount_units: int  # 1e-8 USD
    is_hard: bool


@dataclass(frozen=True, slots=True)
class TenantCaps:
    tenant: CapInfo | None = None
    each_user: CapInfo | None = None
    users: Mapping[str, CapInfo] = field(default_factory=dict)  # by end user external id


NO_CAPS = TenantCaps()


@dataclass(frozen=True, slots=True)
class PlanInfo:
    slug: str
    requests_per_minute: int | None
    requests_per_hour: int | None
    requests_per_day: int | None
    tokens_per_minute: int | None
    allows_platform_keys: bool
    platform_fee_percent: Decimal
    prepaid: bool


@dataclass(frozen=True, slots=True)
class TenantInfo:
    id: int
    slug: str
    is_active: bool
    billing_day: int
    plan: PlanInfo
    settings: Settings
    caps: TenantCaps = NO_CAPS


@dataclass(frozen=True, slots=True)
class APIKeyInfo:
    id: int | None  # None for a playground token: no API key row, usage has api_key NULL
    tenant_id: int
    scopes: frozenset[str]
    end_user_id: int | None
    end_user_external_id: str | None
    requests_per_minute: int | None


@dataclass(frozen=True, slots=True)
class ProviderInfo:
    id: int
    slug: str
    name: str
    kind: str
    protocol: str
    base_url: str
    options: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class KeyRef:
    """A usable provider key: which one (for marking and usage) and its plaintext."""

    id: int
    provider_id: int
    source: int  # usage.choices.KeySource
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class EndUserInfo:
    id: int
    tenant_id: int
    external_id: str


@dataclass
class Snapshot:
    version: str
    api_keys: dict[str, tuple[tuple[str, APIKeyInfo], ...]]  # prefix -> (hash, key) pairs
    tenants: dict[int, TenantInfo]
    end_users: dict[tuple[int, str], EndUserInfo]  # by (tenant, external id)
    user_settings: dict[int, selectors.SettingsRow]  # by end user id
    providers: dict[int, ProviderInfo]
    platform_keys: dict[int, KeyRef]  # by provider
    tenant_keys: dict[int, dict[int, KeyRef]]  # tenant -> provider -> key
    user_keys: dict[int, dict[int, KeyRef]]  # end user -> provider -> key
    table: RoutingTable
    models: dict[int, ModelOption]
    # Per (tenant, end user) memo of keys and settings, valid for this snapshot's life.
    _keys_memo: dict[tuple[int, int | None], dict[int, KeyRef]] = field(default_factory=dict)
    _settings_memo: dict[tuple[int, int | None], Settings] = field(default_factory=dict)
    # Hosts staff allow-listed: the upstream session's connections to them skip the SSRF guard.
    upstream_hosts: frozenset[str] = frozenset()

    def keys_for(self, tenant: TenantInfo, end_user_id: int | None) -> dict[int, KeyRef]:
        """Provider id -> the key to use: end user's own, then tenant's, then platform's."""
        memo_key = (tenant.id, end_user_id)
        keys = self._keys_memo.get(memo_key)
        if keys is not None:
            return keys
        keys = dict(self.platform_keys) if tenant.plan.allows_platform_keys else {}
        keys.update(self.tenant_keys.get(tenant.id, {}))
        if end_user_id is not None:
            keys.update(self.user_keys.get(end_user_id, {}))
        self._keys_memo[memo_key] = keys
        return keys

    def settings_for(self, tenant: TenantInfo, end_user_id: int | None) -> Settings:
        memo_key = (tenant.id, end_user_id)
        found = self._settings_memo.get(memo_key)
        if found is None:
            found = tenant.settings.merged(
                self.user_settings.get(end_user_id) if end_user_id is not None else None
            )
            self._settings_memo[memo_key] = found
        return found


def _caps() -> dict[int, TenantCaps]:
    found: dict[int, dict] = {}
    for cap in usage_selectors.platform_enabled_caps():
        info = CapInfo(to_units(cap.amount_usd), cap.mode == CapMode.HARD)
        entry = found.setdefault(cap.tenant_id, {"tenant": None, "each_user": None, "users": {}})
        if cap.scope == CapScope.TENANT:
            entry["tenant"] = info
        elif cap.scope == CapScope.EACH_USER:
            entry["each_user"] = info
        else:
            entry["users"][cap.end_user.external_id] = info
    return {tenant_id: TenantCaps(**entry) for tenant_id, entry in found.items()}


def build_snapshot(version: str) -> Snapshot:
    """Load the configuration (sync; run it in a thread from async code)."""
    platform_settings = Settings().merged(selectors.platform_settings_row())
    tenant_rows = selectors.tenant_settings_rows()

    caps = _caps()
    tenants = {}
    for t in selectors.platform_tenants():
        plan = t.plan
        tenants[t.pk] = TenantInfo(
            id=t.pk,
            slug=t.slug,
            is_active=t.is_active,
            billing_day=t.billing_day,
            plan=PlanInfo(
                slug=plan.slug,
                requests_per_minute=plan.requests_per_minute,
                requests_per_hour=plan.requests_per_hour,
                requests_per_day=plan.requests_per_day,
                tokens_per_minute=plan.tokens_per_minute,
                allows_platform_keys=plan.allows_platform_keys,
                platform_fee_percent=plan.platform_fee_percent,
                prepaid=plan.prepaid,
            ),
            settings=platform_settings.merged(tenant_rows.get(t.pk)),
            caps=caps.get(t.pk, NO_CAPS),
        )

    by_prefix: dict[str, list[tuple[str, APIKeyInfo]]] = {}
    for k in selectors.platform_active_api_keys():
        info = APIKeyInfo(
            id=k.pk,
            tenant_id=k.tenant_id,
            scopes=frozenset(k.scopes or ()),
            end_user_id=k.end_user_id,
            end_user_external_id=k.end_user.external_id if k.end_user_id else None,
            requests_per_minute=k.requests_per_minute,
        )
        by_prefix.setdefault(k.prefix, []).append((k.key_hash, info))
    api_keys = {prefix: tuple(pairs) for prefix, pairs in by_prefix.items()}

    end_users = {
        (u.tenant_id, u.external_id): EndUserInfo(u.pk, u.tenant_id, u.external_id)
        for u in selectors.platform_configured_end_users()
    }

    allowed_hosts = upstream_hosts.allowed_hosts()
    providers = {}
    for p in selectors.platform_enabled_providers():
        if p.tenant_id is not None and netguard.host_of(p.base_url) in allowed_hosts:
            # Its connections would skip the guard (trust is per host, and the pool is
            # shared): a tenant's endpoint on an allow-listed host is not routed at all.
            logger.warning("snapshot.tenant_endpoint_on_allowed_host", extra={"provider": p.slug})
            continue
        providers[p.pk] = ProviderInfo(
            p.pk, p.slug, p.name, p.kind, p.protocol, p.base_url, dict(p.options)
        )

    platform_keys: dict[int, KeyRef] = {}
    tenant_keys: dict[int, dict[int, KeyRef]] = {}
    user_keys: dict[int, dict[int, KeyRef]] = {}
    for key in selectors.platform_usable_provider_keys():
        if key.provider_id not in providers:
            continue
        try:
            ref = KeyRef(key.pk, key.provider_id, KEY_SOURCE[key.scope], key.reveal_secret())
        except DecryptionError:
            logger.error("snapshot.key_undecryptable", extra={"provider_key_id": key.pk})
            continue
        # Oldest first, so the newest key of a scope wins when several exist.
        if key.scope == KeyScope.PLATFORM:
            platform_keys[key.provider_id] = ref
        elif key.scope == KeyScope.TENANT:
            tenant_keys.setdefault(key.tenant_id, {})[key.provider_id] = ref
        else:
            user_keys.setdefault(key.end_user_id, {})[key.provider_id] = ref

    # The same conversion the power-level page uses, so the page and the gateway agree.
    options = selectors.platform_model_options(providers)
    policies = selectors.platform_router_policies()
    return Snapshot(
        version=version,
        api_keys=api_keys,
        tenants=tenants,
        end_users=end_users,
        user_settings=selectors.end_user_settings_rows(),
        providers=providers,
        platform_keys=platform_keys,
        tenant_keys=tenant_keys,
        user_keys=user_keys,
        table=build_table(options, policies),
        models={o.id: o for o in options},
        upstream_hosts=allowed_hosts,
    )
