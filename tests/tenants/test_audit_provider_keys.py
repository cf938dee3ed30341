"""Audit inventory, provider keys: every change, check and use is recorded with who, which
tenant and where from, through the page, the management API, the admin and the tasks."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from providers import services as provider_services
from providers.choices import KeyStatus
from providers.models import ProviderKey
from providers.tasks import validate_provider_key
from tenants.models import AuditLog
from tests.factories import CatalogModelFactory, ProviderFactory, ProviderKeyFactory
from tests.tenants.audit_helpers import (
    CLIENT_IP,
    api_key_client,
    browser,
    member_browser,
    recorded,
)

GOOD_SECRET = "sk-sim-good-audit-7f3a9c21"
NEW_SECRET = "sk-sim-good-audit-new-55aa"
BAD_SECRET = "sim-bad-audit-secret-0001"  # the simulator answers 401 to these


@pytest.fixture
def sim_provider(sim):
    provider = ProviderFactory(name="Simulated", slug="simulated", base_url=f"{sim.url}/v1")
    CatalogModelFactory(
        provider=provider,
        model_id="sim-eco",
        input_price_per_mtok=Decimal("0.10"),
        output_price_per_mtok=Decimal("0.40"),
    )
    return provider


@pytest.fixture
def owner_page(tenant):
    return member_browser(tenant, "owner")


@pytest.fixture
def key(tenant, sim_provider):
    return ProviderKeyFactory(tenant=tenant, provider=sim_provider, secret=GOOD_SECRET)


def assert_no_secret(entry: AuditLog, *secrets: str) -> None:
    text = f"{entry.changes} {entry.target_repr}"
    for secret in secrets:
        assert secret not in text


# --- the keys page -------------------------------------------------------------------------


def test_adding_a_key_on_the_page_records_added_and_validated_with_last4_only(
    owner_page, tenant, sim_provider
):
    client, owner = owner_page
    data = {"provider": sim_provider.pk, "label": "prod", "secret": GOOD_SECRET, "scope": "tenant"}

    response = client.post(reverse("providers:key-add"), data)

    assert response.status_code == 302
    key = ProviderKey.objects.get(tenant=tenant)
    added = recorded("provider_key.added", tenant=tenant, actor=owner)
    assert added.target_id == str(key.pk)
    assert added.changes == {"provider": "simulated", "scope": "tenant", "key": "••••9c21"}
    assert_no_secret(added, GOOD_SECRET, GOOD_SECRET[:-4])
    validated = recorded("provider_key.validated", tenant=tenant, actor=owner)
    assert validated.target_id == str(key.pk)


def test_a_key_refused_by_its_live_check_is_recorded_though_nothing_is_stored(
    owner_page, tenant, sim_provider
):
    client, owner = owner_page
    data = {"provider": sim_provider.pk, "label": "", "secret": BAD_SECRET, "scope": "tenant"}

    client.post(reverse("providers:key-add"), data)

    assert not ProviderKey.objects.filter(tenant=tenant).exists()
    entry = recorded("provider_key.check_refused", tenant=tenant, actor=owner)
    assert entry.changes["provider"] == "simulated"
    assert entry.changes["status"] == 401
    assert_no_secret(entry, BAD_SECRET)


def test_replacing_a_key_on_the_page_records_old_and_new_last4(owner_page, tenant, key):
    client, owner = owner_page

    response = client.post(reverse("providers:key-replace", args=[key.pk]), {"secret": NEW_SECRET})

    assert response.status_code == 302
    entry = recorded("provider_key.replaced", tenant=tenant, actor=owner)
    assert entry.changes == {"key": ["••••9c21", "••••55aa"]}
    assert_no_secret(entry, GOOD_SECRET, NEW_SECRET)


def test_a_refused_replacement_is_recorded_against_the_key(owner_page, tenant, key):
    client, owner = owner_page

    client.post(reverse("providers:key-replace", args=[key.pk]), {"secret": BAD_SECRET})

    entry = recorded("provider_key.check_refused", tenant=tenant, actor=owner)
    assert entry.target_id == str(key.pk)
    key.refresh_from_db()
    assert key.reveal_secret() == GOOD_SECRET


def test_disabling_and_enabling_a_key_on_the_page_are_recorded(owner_page, tenant, key):
    client, owner = owner_page
    url = reverse("providers:key-set-enabled", args=[key.pk])

    client.post(url, {"enabled": "0"})
    recorded("provider_key.disabled", tenant=tenant, actor=owner)
    client.post(url, {"enabled": "1"})
    entry = recorded("provider_key.enabled", tenant=tenant, actor=owner)

    assert entry.target_id == str(key.pk)


def test_deleting_a_key_on_the_page_keeps_its_mask_in_the_entry(owner_page, tenant, key):
    client, owner = owner_page

    client.post(reverse("providers:key-delete", args=[key.pk]))

    assert not ProviderKey.objects.filter(pk=key.pk).exists()
    entry = recorded("provider_key.deleted", tenant=tenant, actor=owner)
    assert (entry.target_id, entry.changes) == (str(key.pk), {"key": "••••9c21"})


# --- the management API ----------------------------------------------------------------------


def test_adding_a_key_through_the_api_names_the_api_key_that_did_it(tenant, sim_provider):
    client, api_key = api_key_client(tenant)

    response = client.post(
        "/api/v1/provider-keys",
        {"provider": "simulated", "scope": "tenant", "secret": GOOD_SECRET},
        format="json",
    )

    assert response.status_code == 201, response.content
    entry = recorded("provider_key.added", tenant=tenant, actor_label=f"api-key:{api_key.prefix}")
    assert entry.actor_id is None
    assert_no_secret(entry, GOOD_SECRET, api_key.raw_key)


def test_renaming_a_key_through_the_api_is_recorded(tenant, key):
    client, api_key = api_key_client(tenant)

    client.patch(f"/api/v1/provider-keys/{key.pk}", {"label": "billing"}, format="json")

    entry = recorded("provider_key.renamed", tenant=tenant, actor_label=f"api-key:{api_key.prefix}")
    assert entry.changes == {"label": ["", "billing"]}


def test_a_refused_key_through_the_api_is_recorded(tenant, sim_provider):
    client, api_key = api_key_client(tenant)

    response = client.post(
        "/api/v1/provider-keys",
        {"provider": "simulated", "scope": "tenant", "secret": BAD_SECRET},
        format="json",
    )

    assert response.status_code == 400
    entry = recorded(
        "provider_key.check_refused", tenant=tenant, actor_label=f"api-key:{api_key.prefix}"
    )
    assert_no_secret(entry, BAD_SECRET)


# --- background checks and the router ------------------------------------------------------


def test_the_validation_task_records_a_failed_check_as_the_task(tenant, sim_provider):
    key = ProviderKeyFactory(
        tenant=tenant, provider=sim_provider, secret=BAD_SECRET, status=KeyStatus.PENDING
    )

    assert validate_provider_key(key.pk) == KeyStatus.INVALID

    entry = recorded(
        "provider_key.validation_failed",
        tenant=tenant,
        actor_label=provider_services.VALIDATION_TASK,
        ip=None,
    )
    assert entry.target_id == str(key.pk)
    assert_no_secret(entry, BAD_SECRET)


def test_the_validation_task_records_a_passed_check(tenant, sim_provider):
    key = ProviderKeyFactory(
        tenant=tenant, provider=sim_provider, secret=GOOD_SECRET, status=KeyStatus.PENDING
    )

    assert validate_provider_key(key.pk) == KeyStatus.ACTIVE

    recorded(
        "provider_key.validated",
        tenant=tenant,
        actor_label=provider_services.VALIDATION_TASK,
        ip=None,
    )


def test_a_key_the_router_saw_refused_is_recorded_as_the_routers_doing(tenant, key):
    provider_services.mark_key_invalid(key_id=key.pk, error="upstream said 401")

    entry = recorded("provider_key.validation_failed", tenant=tenant, actor_label="router", ip=None)
    assert entry.changes == {"error": "upstream said 401"}


# --- the admin ---------------------------------------------------------------------------


def test_the_admins_test_key_action_records_the_check_and_the_action(staff_user, tenant, key):
    client = browser(staff_user)

    client.post(
        reverse("admin:providers_providerkey_changelist"),
        {"action": "test_keys", "_selected_action": [key.pk]},
    )

    recorded("provider_key.validated", tenant=tenant, actor=staff_user)
    run = recorded("admin.action_run", tenant=None, actor=staff_user)
    assert run.changes == {
        "action": "test_keys",
        "model": "providers.providerkey",
        "count": 1,
        "ids": [str(key.pk)],
    }


def test_deleting_keys_from_the_admin_changelist_records_each_key_and_the_action(
    staff_user, tenant, sim_provider
):
    keys = [ProviderKeyFactory(tenant=tenant, provider=sim_provider) for _ in range(2)]
    client = browser(staff_user)
    url = reverse("admin:providers_providerkey_changelist")
    selection = {"action": "delete_selected", "_selected_action": [k.pk for k in keys]}

    client.post(url, selection)  # the confirmation page changes nothing
    assert not AuditLog.objects.filter(action="admin.action_run").exists()
    client.post(url, {**selection, "post": "yes"})

    assert not ProviderKey.objects.filter(pk__in=[k.pk for k in keys]).exists()
    deleted = AuditLog.objects.filter(action="provider_key.deleted", actor=staff_user)
    assert sorted(deleted.values_list("target_id", flat=True)) == sorted(str(k.pk) for k in keys)
    assert set(deleted.values_list("ip_address", flat=True)) == {CLIENT_IP}
    run = recorded("admin.action_run", tenant=None, actor=staff_user)
    assert (run.changes["action"], run.changes["count"]) == ("delete_selected", 2)


def test_disabling_keys_in_bulk_from_the_admin_is_recorded_per_key(staff_user, tenant, key):
    client = browser(staff_user)

    client.post(
        reverse("admin:providers_providerkey_changelist"),
        {"action": "disable_keys", "_selected_action": [key.pk]},
    )

    entry = recorded("provider_key.disabled", tenant=tenant, actor=staff_user)
    assert entry.target_id == str(key.pk)


def test_replacing_a_key_in_the_admin_records_last4_only(staff_user, tenant, key):
    client = browser(staff_user)
    url = reverse("admin:providers_providerkey_change", args=[key.pk])

    client.post(url, {"label": key.label, "new_secret": NEW_SECRET, "is_enabled": "on"})

    entry = recorded("provider_key.replaced", tenant=tenant, actor=staff_user)
    assert entry.changes == {"key": ["••••9c21", "••••55aa"]}
    assert_no_secret(entry, NEW_SECRET)


def test_a_timestamp_is_when_it_happened(owner_page, tenant, key):
    client, _ = owner_page
    before = timezone.now()

    client.post(reverse("providers:key-set-enabled", args=[key.pk]), {"enabled": "0"})

    entry = recorded("provider_key.disabled", tenant=tenant)
    assert before <= entry.created_at <= timezone.now()
