"""A small world for gateway tests: a tenant with a key, simulator-backed providers, a catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import pytest

from providers.choices import KeyScope, KeyStatus, ProviderKind, WireProtocol
from providers.models import Provider, ProviderKey
from routing.models import CatalogModel
from tests.factories import (
    CatalogModelFactory,
    ProviderFactory,
    ProviderKeyFactory,
    TenantAPIKeyFactory,
    TenantFactory,
    ensure_default_data,
)
from usage.models import CreditLedgerEntry


@dataclass
class World:
    gateway: object
    sim: object
    tenant: object
    api_key: str
    key_row: object
    openai: Provider
    anthropic: Provider
    models: dict[str, CatalogModel] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"{self.gateway.url}/v1"

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}


def add_provider(
    sim_url: str, slug: str, *, protocol=WireProtocol.OPENAI, path: str = "", kind=None
):
    return ProviderFactory(
        slug=slug,
        name=slug,
        kind=kind
        or (ProviderKind.SIMULATOR if protocol == WireProtocol.OPENAI else ProviderKind.ANTHROPIC),
        protocol=protocol,
        base_url=f"{sim_url}{path}/v1",
    )


def platform_key(provider: Provider, secret: str) -> ProviderKey:
    return ProviderKeyFactory(
        provider=provider,
        tenant=None,
        scope=KeyScope.PLATFORM,
        secret=secret,
        status=KeyStatus.ACTIVE,
    )


@pytest.fixture
def world(gateway, sim) -> World:
    ensure_default_data()
    tenant = TenantFactory(slug="acme", name="Acme")
    CreditLedgerEntry.objects.create(tenant=tenant, kind="grant", amount_usd=Decimal(100))
    key = TenantAPIKeyFactory(tenant=tenant)
    openai = add_provider(sim.url, "sim-openai")
    anthropic = add_provider(sim.url, "sim-anthropic", protocol=WireProtocol.ANTHROPIC)
    platform_key(openai, "sim-platform-openai-0001")
    platform_key(anthropic, "sim-platform-anthropic-0002")
    models = {
        "sim-eco": CatalogModelFactory(
            provider=openai,
            model_id="sim-eco",
            name="sim-eco",
            input_price_per_mtok=Decimal("0.10"),
            output_price_per_mtok=Decimal("0.40"),
            cached_input_price_per_mtok=Decimal("0.05"),
            quality_score=0.4,
            observed_latency_ms=300,
        ),
        "sim-balanced": CatalogModelFactory(
            provider=openai,
            model_id="sim-balanced",
            name="sim-balanced",
            input_price_per_mtok=Decimal("1.00"),
            output_price_per_mtok=Decimal("4.00"),
            cached_input_price_per_mtok=Decimal("0.50"),
            quality_score=0.65,
            observed_latency_ms=600,
        ),
        "sim-precision": CatalogModelFactory(
            provider=openai,
            model_id="sim-precision",
            name="sim-precision",
            input_price_per_mtok=Decimal("10.00"),
            output_price_per_mtok=Decimal("30.00"),
            cached_input_price_per_mtok=Decimal("5.00"),
            quality_score=0.9,
            observed_latency_ms=1200,
        ),
        "sim-embed": CatalogModelFactory(
            provider=openai,
            model_id="sim-embed",
            name="sim-embed",
            mode="embedding",
            input_price_per_mtok=Decimal("0.02"),
            output_price_per_mtok=Decimal("0"),
            cached_input_price_per_mtok=Decimal("0.02"),
            quality_score=0.5,
        ),
        "claude-sim-sonnet": CatalogModelFactory(
            provider=anthropic,
            model_id="claude-sim-sonnet",
            name="anthropic/claude-sim-sonnet",
            input_price_per_mtok=Decimal("3.00"),
            output_price_per_mtok=Decimal("15.00"),
            cached_input_price_per_mtok=Decimal("0.30"),
            quality_score=0.8,
            observed_latency_ms=800,
        ),
    }
    gateway.sync()
    return World(gateway, sim, tenant, key.raw_key, key, openai, anthropic, models)
