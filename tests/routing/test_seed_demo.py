"""seed_demo: demo tenants, users, simulator providers and models; running it twice is safe."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command

from providers.choices import KeyStatus, ProviderKind, WireProtocol
from providers.models import Provider, ProviderKey
from routing.models import CatalogModel, RoutingPolicy
from routing.services import import_pricing_map
from tenants.models import Membership, Tenant, TenantAPIKey, hash_api_key

DEMO_PASSWORD = "switchyard-demo"
EXPECTED_USERS = {
    "acme": [("acme-owner", "owner"), ("acme-member", "member"), ("acme-viewer", "viewer")],
    "globex": [
        ("globex-owner", "owner"),
        ("globex-member", "member"),
        ("globex-viewer", "viewer"),
    ],
}


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Seven users per run; the default hasher's 1M PBKDF2 rounds would dominate the test.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        model.__name__: model.objects.count()
        for model in (Tenant, get_user_model(), Membership, Provider, ProviderKey, CatalogModel)
    }


def test_seeding_twice_prints_the_documented_json_and_duplicates_nothing(db):
    first = json.loads(seed("--json"))
    after_first = counts()
    second = json.loads(seed("--json"))

    assert counts() == after_first
    assert after_first == {
        "Tenant": 2,
        "User": 7,  # admin + three per tenant
        "Membership": 6,
        "Provider": 2,
        "ProviderKey": 2,
        "CatalogModel": 7,
    }
    for report in (first, second):
        assert set(report) == {"base_url", "tenants"}
        assert report["base_url"] == settings.SWITCHYARD_PUBLIC_URL
        assert [t["slug"] for t in report["tenants"]] == ["acme", "globex"]
        for tenant in report["tenants"]:
            assert set(tenant) == {"slug", "api_key", "users"}
            assert [(u["username"], u["role"]) for u in tenant["users"]] == EXPECTED_USERS[
                tenant["slug"]
            ]
            assert all(set(u) == {"username", "password", "role"} for u in tenant["users"])
    keys = [t["api_key"] for report in (first, second) for t in report["tenants"]]
    assert len(set(keys)) == 4
    for report in (first, second):
        for tenant in report["tenants"]:
            stored = TenantAPIKey.objects.get(key_hash=hash_api_key(tenant["api_key"]))
            assert stored.tenant.slug == tenant["slug"]
            assert stored.matches(tenant["api_key"])
            assert not stored.is_revoked


def test_users_log_in_with_the_demo_password_in_their_roles(db):
    seed("--json")

    User = get_user_model()
    admin = User.objects.get(username="admin")
    assert admin.is_staff
    assert admin.is_superuser
    assert admin.check_password(DEMO_PASSWORD)
    roles = {
        (m.tenant.slug, m.user.username): m.role
        for m in Membership.objects.select_related("tenant", "user")
    }
    assert roles == {
        (slug, username): role for slug, users in EXPECTED_USERS.items() for username, role in users
    }
    assert all(u.check_password(DEMO_PASSWORD) for u in User.objects.exclude(username="admin"))
    assert Tenant.objects.get(slug="acme").plan.slug == "professional"
    assert Tenant.objects.get(slug="globex").plan.slug == "starter"


def test_the_password_comes_from_the_environment_when_set(db, monkeypatch):
    monkeypatch.setenv("SWITCHYARD_DEMO_PASSWORD", "another-demo-secret")

    report = json.loads(seed("--json"))

    assert {u["password"] for t in report["tenants"] for u in t["users"]} == {"another-demo-secret"}
    assert get_user_model().objects.get(username="acme-owner").check_password("another-demo-secret")


def test_one_simulator_provider_per_wire_protocol_with_an_active_platform_key(db):
    seed("--json")

    simulator = f"{settings.SWITCHYARD_SIMULATOR_URL.rstrip('/')}/v1"
    providers = {p.slug: p for p in Provider.objects.all()}
    assert (providers["sim-openai"].kind, providers["sim-openai"].protocol) == (
        ProviderKind.SIMULATOR,
        WireProtocol.OPENAI,
    )
    assert (providers["sim-anthropic"].kind, providers["sim-anthropic"].protocol) == (
        ProviderKind.ANTHROPIC,
        WireProtocol.ANTHROPIC,
    )
    assert {p.base_url for p in providers.values()} == {simulator}
    assert all(p.tenant_id is None for p in providers.values())
    keys = ProviderKey.objects.filter(scope="platform")
    assert {k.provider.slug for k in keys} == {"sim-openai", "sim-anthropic"}
    assert all(k.status == KeyStatus.ACTIVE and k.is_usable for k in keys)
    names = dict(CatalogModel.objects.values_list("name", "model_id"))
    assert names["sim-eco"] == "sim-eco"
    assert names["anthropic/claude-sim-haiku"] == "claude-sim-haiku"
    assert CatalogModel.objects.get(model_id="sim-embed").mode == "embedding"


def test_every_power_level_has_an_enabled_candidate_under_its_cap_on_each_provider(db):
    seed("--json")

    chat_models = list(
        CatalogModel.objects.filter(is_enabled=True, is_deprecated=False, mode="chat")
    )
    assert all(m.observed_latency_ms and m.supports_tools and m.supports_json for m in chat_models)
    for policy in RoutingPolicy.objects.all():
        for slug in ("sim-openai", "sim-anthropic"):
            under_cap = [
                m
                for m in chat_models
                if m.provider.slug == slug and m.blended_price_per_1k <= policy.max_price_per_1k
            ]
            assert under_cap, f"{policy.power_level} has no candidate on {slug}"
    assert RoutingPolicy.objects.count() == 3


def test_a_default_catalog_import_leaves_the_simulator_providers_alone(db):
    seed("--json")
    before = list(CatalogModel.objects.order_by("pk").values_list())

    diff = import_pricing_map(source=settings.SWITCHYARD_CATALOG_SNAPSHOT)

    assert diff.providers == ()
    assert list(CatalogModel.objects.order_by("pk").values_list()) == before


def test_without_json_it_prints_a_summary_for_people(db):
    out = seed()

    assert "admin" in out
    assert "acme" in out
    assert "globex" in out
    assert out.count("sy-") == 2
