"""Audit inventory, configuration: power level and settings, spending caps, credits, the
tenant itself, plans, the catalog and routing policies; by tenant users on the pages and
the API, and by staff in the admin and the staff API."""

from __future__ import annotations

from django.urls import reverse

from routing.models import RoutingPolicy
from tenants.models import AuditLog, Plan
from tests.factories import CatalogModelFactory, ProviderFactory, ensure_default_data
from tests.tenants.admin_forms import changeform_data
from tests.tenants.audit_helpers import (
    api_key_client,
    api_session,
    browser,
    member_browser,
    recorded,
)


def settings_form(**fields) -> dict:
    data = {
        "power_level": "balanced",
        "preferred_models": "",
        "auto_failover": "on",
        "default_temperature": "",
        "default_max_tokens": "",
        "system_prompt": "",
    }
    return {**data, **fields}


# --- power level and settings -----------------------------------------------------------


def test_an_owner_changing_the_tenants_power_level_on_the_page_is_recorded(tenant):
    client, owner = member_browser(tenant, "owner")
    client.post(reverse("routing:settings-tenant"), settings_form(power_level="balanced"))

    response = client.post(reverse("routing:settings-tenant"), settings_form(power_level="eco"))

    assert response.status_code == 302
    entry = recorded("llm_settings.updated", tenant=tenant, actor=owner)
    assert entry.changes["power_level"] == ["balanced", "eco"]


def test_a_members_own_override_on_the_page_is_recorded_in_the_tenant(tenant):
    client, member = member_browser(tenant, "member")
    form = {
        "power_level": "precision",
        "preferred_models": "",
        "auto_failover": "",
        "default_temperature": "",
        "default_max_tokens": "",
    }

    client.post(reverse("routing:settings-mine"), form)

    entry = recorded("llm_settings.created", tenant=tenant, actor=member)
    assert entry.changes["power_level"][1] == "precision"


def test_settings_changed_through_the_api_are_recorded(tenant):
    client, key = api_key_client(tenant)

    response = client.patch("/api/v1/settings", {"default_max_tokens": 256}, format="json")

    assert response.status_code == 200, response.content
    entry = recorded("llm_settings.created", tenant=tenant, actor_label=f"api-key:{key.prefix}")
    assert entry.changes["default_max_tokens"] == [None, 256]


# --- spending caps and credits --------------------------------------------------------------


def test_setting_the_tenant_cap_on_the_page_is_recorded(tenant):
    client, owner = member_browser(tenant, "owner")
    form = {
        "amount_usd": "120.50",
        "mode": "hard",
        "alert_thresholds": "50, 90",
        "is_enabled": "on",
    }

    client.post(reverse("usage:tenant-cap"), {f"tenant-{k}": v for k, v in form.items()})

    entry = recorded("spending_cap.created", tenant=tenant, actor=owner)
    assert entry.changes["after"] == ["120.50", "hard", True]


def test_changing_a_cap_through_the_api_records_before_and_after(tenant, owner):
    client = api_session(owner)
    client.post(
        "/api/v1/spending-caps",
        {"scope": "tenant", "amount_usd": "250.00", "mode": "soft"},
        format="json",
    )

    client.post(
        "/api/v1/spending-caps",
        {"scope": "tenant", "amount_usd": "90.00", "mode": "hard"},
        format="json",
    )

    entry = recorded("spending_cap.updated", tenant=tenant, actor=owner)
    assert entry.changes == {"before": ["250.00", "soft", True], "after": ["90.00", "hard", True]}


def test_credits_granted_in_the_admin_are_recorded(staff_user, tenant):
    client = browser(staff_user)

    client.post(
        reverse("admin:usage_creditledgerentry_add"),
        {"tenant": tenant.pk, "kind": "grant", "amount_usd": "25.5", "reason": "pilot"},
    )

    entry = recorded("credits.granted", tenant=tenant, actor=staff_user)
    assert entry.changes["reason"] == "pilot"


# --- the tenant and its plan (staff) ---------------------------------------------------------


def test_suspending_a_tenant_from_the_changelist_is_recorded(staff_user, tenant):
    client = browser(staff_user)

    client.post(
        reverse("admin:tenants_tenant_changelist"),
        {"action": "suspend", "_selected_action": [tenant.pk]},
    )

    entry = recorded("tenant.updated", tenant=tenant, actor=staff_user)
    assert entry.changes == {"is_active": ["True", "False"]}
    run = recorded("admin.action_run", tenant=None, actor=staff_user)
    assert run.changes["action"] == "suspend"


def test_changing_a_plan_in_the_admin_is_recorded_with_the_address(staff_user, db):
    trial = Plan.objects.get(slug="trial")
    client = browser(staff_user)
    url = reverse("admin:tenants_plan_change", args=[trial.pk])

    client.post(url, changeform_data(client.get(url), requests_per_minute="12"))

    entry = recorded("plan.updated", tenant=None, actor=staff_user)
    assert entry.changes == {"requests_per_minute": [10, 12]}


# --- the catalog and routing policies (staff) -------------------------------------------------


def test_a_catalog_price_changed_through_the_staff_api_is_recorded(staff_user):
    model = CatalogModelFactory(provider=ProviderFactory())
    client = api_session(staff_user)

    response = client.patch(
        f"/api/v1/staff/catalog-models/{model.pk}",
        {"input_price_per_mtok": "0.25"},
        format="json",
    )

    assert response.status_code == 200, response.content
    entry = recorded("catalog_model.updated", tenant=None, actor=staff_user)
    assert entry.changes["input_price_per_mtok"][1] == "0.25"


def test_a_routing_policy_changed_through_the_staff_api_is_recorded(staff_user):
    ensure_default_data()
    client = api_session(staff_user)

    client.patch("/api/v1/staff/routing-policies/eco", {"weight_cost": 0.5}, format="json")

    entry = recorded("routing_policy.updated", tenant=None, actor=staff_user)
    assert entry.target_id == str(RoutingPolicy.objects.get(power_level="eco").pk)


def test_enabling_catalog_models_from_the_admin_is_recorded(staff_user):
    model = CatalogModelFactory(provider=ProviderFactory(), is_enabled=False)
    client = browser(staff_user)

    client.post(
        reverse("admin:routing_catalogmodel_changelist"),
        {"action": "enable_models", "_selected_action": [model.pk]},
    )

    actions = set(AuditLog.objects.filter(actor=staff_user).values_list("action", flat=True))
    assert "admin.action_run" in actions
    assert any(a.startswith("catalog_model.") for a in actions), actions
