"""Staff edits to the catalog, routing policies and LLM settings are audited and bump config."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from providers.choices import ProviderKind
from routing.models import CatalogModel, LLMSettings, RoutingPolicy
from tenants import config_version
from tenants.models import AuditLog
from tests.factories import (
    CatalogModelFactory,
    EndUserFactory,
    LLMSettingsFactory,
    ProviderFactory,
    ensure_default_data,
)
from tests.tenants.admin_forms import changeform_data

CATALOG_LIST_URL = reverse("admin:routing_catalogmodel_changelist")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def change_url(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


def test_changing_a_routing_policy_is_audited_and_bumps_config(
    staff_client, staff_user, django_capture_on_commit_callbacks
):
    ensure_default_data()
    eco = RoutingPolicy.objects.get(power_level="eco")
    data = changeform_data(
        staff_client.get(change_url(eco)),
        max_price_per_1k="0.002",
        preferred_provider_kinds=["groq", "ollama"],
    )

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(change_url(eco), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    eco.refresh_from_db()
    assert eco.max_price_per_1k == Decimal("0.002")
    assert eco.preferred_provider_kinds == ["groq", "ollama"]
    entry = AuditLog.objects.get(action="routing_policy.updated")
    assert entry.actor == staff_user
    assert entry.changes["max_price_per_1k"] == ["0.001000", "0.002"]
    assert entry.changes["preferred_provider_kinds"][1] == ["groq", "ollama"]
    assert config_version.read_sync() != "0"


def test_routing_policies_cannot_be_deleted(staff_client):
    ensure_default_data()
    eco = RoutingPolicy.objects.get(power_level="eco")

    url = reverse("admin:routing_routingpolicy_delete", args=[eco.pk])
    assert staff_client.get(url).status_code == 403


def test_changing_a_catalog_models_price_is_audited(
    staff_client, staff_user, django_capture_on_commit_callbacks
):
    model = CatalogModelFactory(input_price_per_mtok=Decimal("1.00"))
    data = changeform_data(staff_client.get(change_url(model)), input_price_per_mtok="0.75")

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(change_url(model), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    model.refresh_from_db()
    assert model.input_price_per_mtok == Decimal("0.75")
    entry = AuditLog.objects.get(action="catalog_model.updated")
    assert (entry.actor, entry.target_id) == (staff_user, str(model.pk))
    assert entry.changes == {"input_price_per_mtok": ["1.000000", "0.75"]}
    assert config_version.read_sync() != "0"


def test_disable_and_enable_actions_audit_each_model_once(
    staff_client, staff_user, django_capture_on_commit_callbacks
):
    models = CatalogModelFactory.create_batch(3)
    already_off = CatalogModelFactory(is_enabled=False)
    ids = [m.pk for m in [*models, already_off]]

    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(CATALOG_LIST_URL, {"action": "disable_models", "_selected_action": ids})

    assert not CatalogModel.objects.filter(is_enabled=True).exists()
    disabled = AuditLog.objects.filter(action="catalog_model.disabled", actor=staff_user)
    assert sorted(int(e.target_id) for e in disabled) == sorted(m.pk for m in models)
    assert config_version.read_sync() != "0"

    staff_client.post(CATALOG_LIST_URL, {"action": "enable_models", "_selected_action": ids})

    assert CatalogModel.objects.filter(is_enabled=True).count() == 4
    assert AuditLog.objects.filter(action="catalog_model.enabled").count() == 4


def test_preferred_providers_of_llm_settings_are_audited(staff_client, staff_user, tenant):
    settings_row = LLMSettingsFactory(tenant=tenant)
    provider = ProviderFactory(name="Groq EU")
    data = changeform_data(
        staff_client.get(change_url(settings_row)), preferred_providers=[str(provider.pk)]
    )

    response = staff_client.post(change_url(settings_row), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert list(settings_row.preferred_providers.all()) == [provider]
    entry = AuditLog.objects.get(action="llm_settings.updated")
    assert (entry.actor, entry.tenant) == (staff_user, tenant)
    assert entry.changes == {"preferred_providers": [[], ["Groq EU"]]}


def test_llm_settings_for_another_tenants_end_user_are_refused(staff_client, tenant, other_tenant):
    stranger = EndUserFactory(tenant=other_tenant)

    response = staff_client.post(
        reverse("admin:routing_llmsettings_add"),
        {"tenant": tenant.pk, "end_user": stranger.pk, "auto_failover": "unknown"},
    )

    assert response.status_code == 200
    assert "end_user" in response.context["adminform"].form.errors
    assert not LLMSettings.objects.filter(end_user=stranger).exists()


def test_sync_catalog_now_imports_the_snapshot_for_platform_providers(staff_client, staff_user):
    openai = ProviderFactory(kind=ProviderKind.OPENAI, slug="openai", name="OpenAI")

    page = staff_client.get(CATALOG_LIST_URL)
    response = staff_client.post(reverse("admin:routing_catalogmodel_sync"), follow=True)

    assert "Sync catalog now" in page.content.decode()
    assert response.status_code == 200
    imported = CatalogModel.objects.filter(provider=openai)
    assert imported.filter(model_id="gpt-4o-mini").exists()
    assert not imported.filter(is_enabled=True).exists()  # new models arrive disabled
    entry = AuditLog.objects.get(action="catalog.imported")
    assert entry.actor == staff_user
    assert any("Catalog import" in str(m) for m in response.context["messages"])


def test_sync_catalog_now_only_answers_post(staff_client):
    response = staff_client.get(reverse("admin:routing_catalogmodel_sync"))

    assert response.status_code == 405
    assert not CatalogModel.objects.exists()
