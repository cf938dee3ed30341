"""/api/v1/staff/*: providers, catalog models and routing policies, for staff signed in only."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from providers.models import Provider
from routing.models import CatalogModel, CatalogPriceChange, RoutingPolicy
from tenants import config_version
from tenants.models import AuditLog
from tests.factories import (
    CatalogModelFactory,
    MembershipFactory,
    ProviderFactory,
    TenantAPIKeyFactory,
    UserFactory,
    ensure_default_data,
)

PROVIDERS = "/api/v1/staff/providers"
MODELS = "/api/v1/staff/catalog-models"
POLICIES = "/api/v1/staff/routing-policies"


def signed_in(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def staff(staff_user):
    return signed_in(staff_user)


@pytest.fixture
def world(db):
    ensure_default_data()
    alpha = ProviderFactory(slug="alpha", name="Alpha")
    beta = ProviderFactory(slug="beta", name="Beta", is_enabled=False)
    small = CatalogModelFactory(provider=alpha, model_id="alpha-small", name="alpha-small")
    large = CatalogModelFactory(
        provider=beta, model_id="beta-large", name="beta-large", is_enabled=False
    )
    return {"alpha": alpha, "beta": beta, "small": small, "large": large}


def routes(world) -> list[tuple[str, str, dict]]:
    return [
        ("get", PROVIDERS, {}),
        ("post", PROVIDERS, {"name": "New", "slug": "new", "kind": "openai"}),
        ("get", f"{PROVIDERS}/{world['alpha'].pk}", {}),
        ("patch", f"{PROVIDERS}/{world['alpha'].pk}", {"is_enabled": False}),
        ("get", MODELS, {}),
        ("get", f"{MODELS}/{world['small'].pk}", {}),
        ("patch", f"{MODELS}/{world['small'].pk}", {"is_enabled": False}),
        ("post", f"{MODELS}/set-enabled", {"ids": [world["small"].pk], "is_enabled": False}),
        ("get", POLICIES, {}),
        ("get", f"{POLICIES}/eco", {}),
        ("patch", f"{POLICIES}/eco", {"weight_cost": 0.5}),
    ]


def nothing_changed(world) -> bool:
    world["alpha"].refresh_from_db()
    world["small"].refresh_from_db()
    return (
        world["alpha"].is_enabled
        and world["small"].is_enabled
        and not Provider.objects.filter(slug="new").exists()
        and RoutingPolicy.objects.get(power_level="eco").weight_cost == 0.7
        and not AuditLog.objects.exists()
    )


def test_anonymous_callers_get_401(world):
    for method, url, data in routes(world):
        response = getattr(APIClient(), method)(url, data, format="json")
        assert response.status_code == 401, (method, url)
    assert nothing_changed(world)


@pytest.mark.parametrize(
    "make_client",
    [
        pytest.param(
            lambda t: signed_in(MembershipFactory(tenant=t, role="owner").user), id="owner"
        ),
        pytest.param(
            lambda t: signed_in(UserFactory(is_staff=False, is_superuser=True)),
            id="superuser-not-staff",
        ),
        pytest.param(lambda t: api_key_client(t), id="manage-api-key"),
    ],
)
def test_only_staff_signed_in_may_call(tenant, world, make_client):
    client = make_client(tenant)
    for method, url, data in routes(world):
        response = getattr(client, method)(url, data, format="json")
        assert response.status_code == 403, (method, url)
        assert set(response.json()) == {"detail"}
    assert nothing_changed(world)


def api_key_client(tenant) -> APIClient:
    key = TenantAPIKeyFactory(tenant=tenant, scopes=["manage", "usage:read", "completions"])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")
    return client


def test_unknown_rows_are_not_found(staff, world):
    assert staff.get(f"{PROVIDERS}/999999").status_code == 404
    assert staff.patch(f"{MODELS}/999999", {"quality_score": 0.1}).status_code == 404
    assert staff.get(f"{POLICIES}/turbo").status_code == 404
    missing = staff.post(f"{MODELS}/set-enabled", {"ids": [world["small"].pk, 999999]})
    assert missing.status_code == 404
    assert nothing_changed(world)


# --- providers ----------------------------------------------------------------------------------


def test_providers_are_listed_and_filtered(staff, world, other_tenant):
    custom = ProviderFactory(tenant=other_tenant, slug="custom")

    everything = staff.get(PROVIDERS).json()["results"]
    enabled = staff.get(PROVIDERS, {"enabled": "true", "platform": "true"}).json()["results"]
    tenants_own = staff.get(PROVIDERS, {"platform": "false"}).json()["results"]

    assert {p["slug"] for p in everything} == {"alpha", "beta", "custom"}
    assert [p["slug"] for p in enabled] == ["alpha"]
    assert [(p["slug"], p["tenant"]) for p in tenants_own] == [("custom", other_tenant.slug)]
    assert custom.pk in {p["id"] for p in everything}
    assert staff.get(PROVIDERS, {"kind": "nope"}).status_code == 400


def test_staff_add_a_provider_through_the_service(staff, db):
    response = staff.post(
        PROVIDERS, {"name": "Groq", "slug": "groq", "kind": "groq"}, format="json"
    )

    assert response.status_code == 201, response.content
    provider = Provider.objects.get(slug="groq")
    assert provider.protocol == "openai"
    assert provider.base_url.startswith("https://")
    assert AuditLog.objects.get().action == "provider.created"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"name": "Dup", "slug": "alpha", "kind": "openai"}, id="duplicate-slug"),
        pytest.param({"name": "X", "slug": "x", "kind": "nope"}, id="bad-kind"),
        pytest.param({"name": "X", "slug": "x y", "kind": "openai"}, id="bad-slug"),
        pytest.param(
            {"name": "X", "slug": "x", "kind": "openai", "base_url": "ftp:/x"}, id="bad-url"
        ),
    ],
)
def test_invalid_providers_are_a_400_and_nothing_is_saved(staff, world, data):
    before = Provider.objects.count()

    response = staff.post(PROVIDERS, data, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"detail"}
    assert Provider.objects.count() == before
    assert not AuditLog.objects.exists()


def test_staff_change_a_provider_and_the_gateway_hears_of_it(
    staff, world, django_capture_on_commit_callbacks
):
    alpha = world["alpha"]
    version = config_version.read_sync()

    with django_capture_on_commit_callbacks(execute=True):
        response = staff.patch(
            f"{PROVIDERS}/{alpha.pk}",
            {"is_enabled": False, "base_url": "http://127.0.0.1:9999/v1/"},
            format="json",
        )

    assert response.status_code == 200, response.content
    alpha.refresh_from_db()
    assert (alpha.is_enabled, alpha.base_url) == (False, "http://127.0.0.1:9999/v1")
    entry = AuditLog.objects.get()
    assert entry.action == "provider.updated"
    assert entry.changes["is_enabled"] == [True, False]
    assert config_version.read_sync() != version
    assert staff.patch(f"{PROVIDERS}/{alpha.pk}", {"base_url": "nope"}).status_code == 400


# --- catalog models -----------------------------------------------------------------------------


def test_catalog_models_are_listed_and_filtered(staff, world, django_assert_max_num_queries):
    for n in range(5):
        CatalogModelFactory(provider=world["alpha"], model_id=f"alpha-extra-{n}")
    staff.get(MODELS)

    with django_assert_max_num_queries(4):
        response = staff.get(MODELS)

    assert response.json()["count"] == 7
    by_provider = staff.get(MODELS, {"provider": "beta"}).json()["results"]
    disabled = staff.get(MODELS, {"enabled": "false"}).json()["results"]
    searched = staff.get(MODELS, {"search": "SMALL"}).json()["results"]
    assert [m["model_id"] for m in by_provider] == ["beta-large"]
    assert [m["model_id"] for m in disabled] == ["beta-large"]
    assert [m["model_id"] for m in searched] == ["alpha-small"]
    assert staff.get(MODELS, {"mode": "video"}).status_code == 400


def test_a_price_change_is_audited_and_kept_in_the_price_history(staff, world):
    small = world["small"]

    response = staff.patch(f"{MODELS}/{small.pk}", {"input_price_per_mtok": "0.25"}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["input_price_per_mtok"] == "0.250000"
    small.refresh_from_db()
    assert small.input_price_per_mtok == Decimal("0.25")
    change = CatalogPriceChange.objects.get()
    assert (change.old_input_price_per_mtok, change.new_input_price_per_mtok) == (
        Decimal("1.00"),
        Decimal("0.25"),
    )
    assert change.sync_run is None
    entry = AuditLog.objects.get(action="catalog_model.updated")
    assert entry.changes["input_price_per_mtok"] == ["1", "0.25"]


def test_setting_a_quality_score_overrides_it_and_clearing_hands_it_back(staff, world):
    small = world["small"]

    overridden = staff.patch(f"{MODELS}/{small.pk}", {"quality_score": 0.95}, format="json")
    small.refresh_from_db()
    assert overridden.status_code == 200
    assert (small.quality_score, small.quality_overridden) == (0.95, True)

    cleared = staff.patch(f"{MODELS}/{small.pk}", {"quality_overridden": False}, format="json")
    small.refresh_from_db()
    assert cleared.status_code == 200
    assert small.quality_overridden is False
    assert small.quality_score != 0.95
    assert AuditLog.objects.filter(action="catalog_model.updated").count() == 2


def test_enabling_goes_through_the_catalog_service(staff, world):
    large = world["large"]

    one = staff.patch(f"{MODELS}/{large.pk}", {"is_enabled": True}, format="json")
    many = staff.post(
        f"{MODELS}/set-enabled",
        {"ids": [large.pk, world["small"].pk], "is_enabled": False},
        format="json",
    )

    assert one.status_code == 200
    assert one.json()["is_enabled"] is True
    assert many.json() == {"changed": 2}
    assert not CatalogModel.objects.filter(is_enabled=True).exists()
    assert list(AuditLog.objects.order_by("pk").values_list("action", flat=True)) == [
        "catalog_model.enabled",
        "catalog_model.disabled",
        "catalog_model.disabled",
    ]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"input_price_per_mtok": "-1"}, id="negative-price"),
        pytest.param({"quality_score": 1.5}, id="quality-above-1"),
        pytest.param({"quality_score": 0.5, "quality_overridden": False}, id="contradiction"),
        pytest.param({"is_enabled": "sometimes"}, id="bad-flag"),
    ],
)
def test_invalid_model_changes_are_a_400_and_nothing_is_saved(staff, world, data):
    small = world["small"]

    response = staff.patch(f"{MODELS}/{small.pk}", data, format="json")

    assert response.status_code == 400
    small.refresh_from_db()
    assert (small.input_price_per_mtok, small.quality_score) == (Decimal("1.00"), 0.7)
    assert not AuditLog.objects.exists()


# --- routing policies ---------------------------------------------------------------------------


def test_routing_policies_are_listed_by_level(staff, world):
    response = staff.get(POLICIES)

    assert response.status_code == 200
    assert {p["power_level"] for p in response.json()} == {"eco", "balanced", "precision"}
    assert staff.get(f"{POLICIES}/eco").json()["max_price_per_1k"] == "0.001000"


def test_staff_change_a_policy_through_the_service(staff, world):
    response = staff.patch(
        f"{POLICIES}/eco",
        {"weight_cost": 0.6, "weight_quality": 0.2, "preferred_provider_kinds": ["groq"]},
        format="json",
    )

    assert response.status_code == 200, response.content
    policy = RoutingPolicy.objects.get(power_level="eco")
    assert (policy.weight_cost, policy.weight_quality) == (0.6, 0.2)
    assert policy.preferred_provider_kinds == ["groq"]
    entry = AuditLog.objects.get()
    assert entry.action == "routing_policy.updated"
    assert entry.changes["weight_cost"] == [0.7, 0.6]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"weight_cost": 1.5}, id="weight-above-1"),
        pytest.param({"max_price_per_1k": "-0.1"}, id="negative-cap"),
        pytest.param({"preferred_provider_kinds": ["nope"]}, id="unknown-kind"),
        pytest.param({"max_latency_ms": 0}, id="zero-latency"),
    ],
)
def test_invalid_policy_changes_are_a_400_and_nothing_is_saved(staff, world, data):
    response = staff.patch(f"{POLICIES}/eco", data, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"detail"}
    assert nothing_changed(world)
