"""The power-level page: what each level does (as the router decides it), the tenant default,
a member's own override; every save validated, audited and applied to the next request."""

from __future__ import annotations

import httpx
import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from routing import selectors
from routing.gateway.snapshot import build_snapshot
from routing.models import LLMSettings
from routing.router import RouteRequest, build_table, route
from routing.services import set_llm_settings
from tenants import config_version
from tenants.models import AuditLog
from tenants.services import end_user_for_login
from tests.factories import (
    CatalogModelFactory,
    EndUserFactory,
    MembershipFactory,
    ProviderFactory,
    ProviderKeyFactory,
    UserFactory,
)

SETTINGS = reverse("routing:settings")
SAVE_TENANT = reverse("routing:settings-tenant")
SAVE_MINE = reverse("routing:settings-mine")


def tenant_post(**overrides):
    data = {
        "power_level": "balanced",
        "preferred_models": "",
        "auto_failover": "on",
        "default_temperature": "",
        "default_max_tokens": "",
        "system_prompt": "",
    }
    data.update(overrides)
    return data


def my_post(**overrides):
    data = {
        "power_level": "",
        "preferred_models": "",
        "auto_failover": "",
        "default_temperature": "",
        "default_max_tokens": "",
    }
    data.update(overrides)
    return data


def logged_in(client, tenant, role):
    user = MembershipFactory(tenant=tenant, role=role).user
    client.force_login(user)
    return user


def model_for(world, model: str, **extra) -> str:
    response = httpx.post(
        f"{world.base_url}/chat/completions",
        headers=world.headers(),
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], **extra},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.headers["x-switchyard-model"]


@pytest.fixture
def world(world):
    """The shared world; usage still queued is written before the database is flushed (a
    batch written during the flush can deadlock with it)."""
    yield world
    world.gateway.flush_usage()


# --- who may see and change what -------------------------------------------------------------


@pytest.mark.parametrize("url", [SETTINGS, SAVE_TENANT, SAVE_MINE])
def test_anonymous_visitors_are_sent_to_log_in(client, db, url):
    response = client.post(url) if url != SETTINGS else client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_a_viewer_can_neither_see_nor_change_the_settings(client, tenant):
    logged_in(client, tenant, "viewer")
    assert client.get(SETTINGS).status_code == 403
    assert client.post(SAVE_TENANT, tenant_post(power_level="eco")).status_code == 403
    assert client.post(SAVE_MINE, my_post(power_level="eco")).status_code == 403
    assert not LLMSettings.objects.filter(tenant=tenant).exists()


def test_a_member_cannot_change_the_tenant_default(client, tenant):
    logged_in(client, tenant, "member")
    assert client.post(SAVE_TENANT, tenant_post(power_level="eco")).status_code == 403
    assert not LLMSettings.objects.filter(tenant=tenant).exists()


def test_a_member_sees_the_tenant_default_read_only_and_their_own_form(client, tenant):
    logged_in(client, tenant, "member")
    response = client.get(SETTINGS)
    assert response.status_code == 200
    assert SAVE_TENANT.encode() not in response.content
    assert SAVE_MINE.encode() in response.content


def test_a_get_does_not_save_anything(client, tenant):
    logged_in(client, tenant, "owner")
    client.get(SETTINGS)
    assert not LLMSettings.objects.filter(tenant=tenant).exists()


# --- the levels, as the router sees them -----------------------------------------------------


def test_each_level_lists_the_models_the_gateway_routes_to(world, client):
    logged_in(client, world.tenant, "owner")
    response = client.get(SETTINGS)
    assert response.status_code == 200
    levels = {effect.level: effect for effect in response.context["view"].levels}

    assert [m.name for m in levels["eco"].top] == ["sim-eco"]
    assert levels["balanced"].eligible == 3
    assert levels["precision"].eligible == 4  # the embeddings model is never a chat candidate
    assert levels["eco"].price_cap == "$0.001"
    assert (levels["eco"].weight_cost, levels["eco"].weight_quality) == (0.7, 0.1)
    for level, effect in levels.items():
        assert model_for(world, level) == effect.top[0].name
        assert f'id="level-{level}"'.encode() in response.content
    html = response.content.decode()
    assert "anthropic/claude-sim-sonnet" in html
    assert "sim-embed" not in html


def test_the_page_ranks_with_the_gateways_own_inputs(world):
    """The page's models and policies are the snapshot's, so its chains are the gateway's."""
    snapshot = build_snapshot("test")
    options = selectors.platform_model_options()
    assert sorted(options, key=lambda o: o.id) == sorted(
        snapshot.models.values(), key=lambda o: o.id
    )
    page_table = build_table(options, selectors.platform_router_policies())
    assert page_table.policies == snapshot.table.policies
    keyed = selectors.keyed_provider_ids(tenant=world.tenant)
    tenant_info = snapshot.tenants[world.tenant.pk]
    assert keyed == frozenset(snapshot.keys_for(tenant_info, None))
    for level in ("eco", "balanced", "precision"):
        request = RouteRequest(model=level, level="balanced", keyed_providers=keyed)
        assert route(request, page_table) == route(request, snapshot.table)


def test_models_of_providers_without_a_key_are_not_eligible_but_counted(world, client):
    keyless = ProviderFactory(slug="keyless", name="Keyless")
    CatalogModelFactory(provider=keyless, model_id="cheap-but-keyless", name="cheap-but-keyless")
    logged_in(client, world.tenant, "owner")
    view = client.get(SETTINGS).context["view"]
    precision = next(e for e in view.levels if e.level == "precision")
    assert "cheap-but-keyless" not in [m.name for m in precision.top]
    assert precision.missing_key == 1
    assert "Keyless" not in precision.providers


def test_a_users_own_key_makes_its_models_eligible_for_them_only(client, tenant):
    provider = ProviderFactory(slug="byok", name="BYOK provider")
    CatalogModelFactory(provider=provider, model_id="byok-model", name="byok-model")
    member = logged_in(client, tenant, "member")
    end_user = end_user_for_login(tenant=tenant, user=member)
    ProviderKeyFactory(provider=provider, tenant=tenant, end_user=end_user, scope="user")

    mine = selectors.power_level_view(tenant=tenant, end_user=end_user)
    theirs = selectors.power_level_view(tenant=tenant)
    assert "byok-model" in mine.reachable_models
    assert "byok-model" not in theirs.reachable_models


def test_another_tenants_custom_provider_is_neither_shown_nor_accepted(
    client, tenant, other_tenant
):
    theirs = ProviderFactory(
        slug="their-endpoint", name="Their private endpoint", tenant=other_tenant
    )
    ProviderKeyFactory(provider=theirs, tenant=other_tenant)
    CatalogModelFactory(provider=theirs, model_id="their-model", name="their-model")
    logged_in(client, tenant, "owner")

    page = client.get(SETTINGS).content.decode()
    assert "Their private endpoint" not in page
    assert "their-model" not in page

    response = client.post(
        SAVE_TENANT, tenant_post(preferred_providers=[theirs.pk], preferred_models="their-model")
    )
    assert response.status_code == 400
    assert not LLMSettings.objects.filter(tenant=tenant).exists()


def test_the_page_costs_a_fixed_number_of_queries(client, tenant, django_assert_max_num_queries):
    for n in range(20):
        CatalogModelFactory(model_id=f"m-{n}")
    logged_in(client, tenant, "owner")
    with django_assert_max_num_queries(20):
        assert client.get(SETTINGS).status_code == 200


# --- saving ---------------------------------------------------------------------------------


def test_a_new_tenant_default_applies_to_the_next_auto_request(world, client):
    user = logged_in(client, world.tenant, "admin")
    assert model_for(world, "auto") == "sim-eco"  # Balanced by default

    response = client.post(SAVE_TENANT, tenant_post(power_level="precision"))
    assert response.status_code == 302
    world.gateway.wait_for_config()

    assert model_for(world, "auto") == "anthropic/claude-sim-sonnet"
    entry = AuditLog.objects.get(action="llm_settings.created", tenant=world.tenant)
    assert entry.actor == user
    assert entry.changes["power_level"] == ["", "precision"]
    page = client.get(SETTINGS)
    assert b"Tenant defaults saved" in page.content
    assert page.context["view"].tenant_settings.power_level == "precision"


def test_a_members_override_applies_only_to_requests_made_as_them(world, client):
    member = logged_in(client, world.tenant, "member")
    response = client.post(SAVE_MINE, my_post(power_level="precision"))
    assert response.status_code == 302
    world.gateway.wait_for_config()

    external_id = f"user:{member.get_username()}"
    assert model_for(world, "auto", user=external_id) == "anthropic/claude-sim-sonnet"
    assert model_for(world, "auto") == "sim-eco"
    assert model_for(world, "auto", user="somebody-else") == "sim-eco"
    row = LLMSettings.objects.get(end_user__external_id=external_id)
    assert row.tenant == world.tenant
    assert AuditLog.objects.filter(action="llm_settings.created", actor=member).exists()

    view = client.get(SETTINGS).context["view"]
    assert view.settings.power_level == "precision"
    assert view.tenant_settings.power_level == "balanced"


def test_inherit_clears_a_members_override(client, tenant):
    logged_in(client, tenant, "member")
    client.post(SAVE_MINE, my_post(power_level="eco", auto_failover="off"))
    row = LLMSettings.objects.get(tenant=tenant, end_user__isnull=False)
    assert (row.power_level, row.auto_failover) == ("eco", False)

    client.post(SAVE_MINE, my_post())
    row.refresh_from_db()
    assert (row.power_level, row.auto_failover) == ("", None)
    assert AuditLog.objects.filter(action="llm_settings.updated").count() == 1


def test_an_owner_saves_every_tenant_field(client, tenant):
    logged_in(client, tenant, "owner")
    provider = ProviderFactory(slug="pref", name="Preferred")
    CatalogModelFactory(provider=provider, model_id="fav", name="fav")
    response = client.post(
        SAVE_TENANT,
        tenant_post(
            power_level="eco",
            preferred_providers=[provider.pk],
            preferred_models="fav",
            auto_failover="",
            default_temperature="0.3",
            default_max_tokens="512",
            system_prompt="Be brief.",
        ),
    )
    assert response.status_code == 302
    row = LLMSettings.objects.get(tenant=tenant, end_user__isnull=True)
    assert row.power_level == "eco"
    assert list(row.preferred_providers.all()) == [provider]
    assert row.preferred_models == ["fav"]
    assert row.auto_failover is False
    assert (row.default_temperature, row.default_max_tokens) == (0.3, 512)
    assert row.system_prompt == "Be brief."
    changes = AuditLog.objects.get(action="llm_settings.created").changes
    assert changes["preferred_providers"] == [[], ["pref"]]


def test_saving_unchanged_settings_writes_nothing(client, tenant):
    logged_in(client, tenant, "owner")
    client.post(SAVE_TENANT, tenant_post(power_level="eco"))
    client.post(SAVE_TENANT, tenant_post(power_level="eco"))
    assert AuditLog.objects.filter(action__startswith="llm_settings.").count() == 1


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("default_temperature", "5", "Temperature must be a number from 0 to 2."),
        ("default_max_tokens", "-3", "Max tokens must be a whole number from 1"),
        ("preferred_models", "gpt-4o-mini, nope-9000", "Unknown models: gpt-4o-mini, nope-9000."),
        ("power_level", "turbo", "Select a valid choice."),
    ],
)
@pytest.mark.parametrize("form", ["tenant", "mine"])
def test_invalid_input_is_explained_and_saves_nothing(client, tenant, form, field, value, message):
    logged_in(client, tenant, "owner")
    url, data = (SAVE_TENANT, tenant_post) if form == "tenant" else (SAVE_MINE, my_post)
    response = client.post(url, data(**{"power_level": "eco", field: value}))
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html
    assert "Nothing was saved" in html
    assert not LLMSettings.objects.filter(tenant=tenant).exists()
    assert not AuditLog.objects.filter(action__startswith="llm_settings.").exists()


def test_a_user_in_two_tenants_saves_into_the_active_one(client, tenant, other_tenant):
    user = UserFactory()
    MembershipFactory(tenant=tenant, user=user, role="owner")
    MembershipFactory(tenant=other_tenant, user=user, role="owner")
    client.force_login(user)
    client.post(reverse("switch-tenant"), {"tenant": other_tenant.pk})
    client.post(SAVE_TENANT, tenant_post(power_level="precision"))
    assert (
        LLMSettings.objects.get(end_user__isnull=True, tenant__isnull=False).tenant == other_tenant
    )


# --- the service under the page (the API and the admin share it) -------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"default_temperature": 5.0}, "default_temperature"),
        ({"default_max_tokens": -1}, "default_max_tokens"),
        ({"preferred_models": ["nope-9000"]}, "preferred_models"),
        ({"power_level": "turbo"}, "power_level"),
    ],
)
def test_the_service_refuses_invalid_settings_and_writes_nothing(owner, tenant, fields, field):
    with pytest.raises(ValidationError) as caught:
        set_llm_settings(tenant=tenant, actor=owner, **fields)
    assert field in caught.value.message_dict
    assert not LLMSettings.objects.filter(tenant=tenant).exists()
    assert not AuditLog.objects.filter(action__startswith="llm_settings.").exists()


def test_the_service_refuses_another_tenants_end_user(owner, tenant, other_tenant):
    stranger = EndUserFactory(tenant=other_tenant)
    with pytest.raises(ValidationError):
        set_llm_settings(tenant=tenant, end_user=stranger, actor=owner, power_level="eco")
    assert not LLMSettings.objects.filter(tenant__isnull=False).exists()


def test_the_service_bumps_the_config_version_on_commit(
    owner, tenant, django_capture_on_commit_callbacks
):
    before = config_version.read_sync()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        set_llm_settings(tenant=tenant, actor=owner, power_level="precision")
    assert len(callbacks) == 1
    assert config_version.read_sync() != before
