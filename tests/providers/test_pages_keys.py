"""The provider keys page: who may do what, the live check before saving, secrets never shown."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from providers.choices import KeyScope, KeyStatus, WireProtocol
from providers.models import ProviderKey
from tenants.models import AuditLog
from tenants.services import end_user_for_login
from tests.factories import (
    CatalogModelFactory,
    MembershipFactory,
    ProviderFactory,
    ProviderKeyFactory,
)

LIST_URL = reverse("providers:key-list")
ADD_URL = reverse("providers:key-add")
GOOD_SECRET = "sk-sim-good-page-7f3a9c21"
BAD_SECRET = "sim-bad-page-secret-0001"


def toggle_url(key: ProviderKey) -> str:
    return reverse("providers:key-set-enabled", args=[key.pk])


def replace_url(key: ProviderKey) -> str:
    return reverse("providers:key-replace", args=[key.pk])


def delete_url(key: ProviderKey) -> str:
    return reverse("providers:key-delete", args=[key.pk])


def sign_in(client: Client, tenant, role: str):
    user = MembershipFactory(tenant=tenant, role=role).user
    client.force_login(user)
    return user


@pytest.fixture
def sim_provider(sim):
    """A provider served by the simulator, with two chat models (sim-eco is the cheaper)."""
    provider = ProviderFactory(name="Simulated", base_url=f"{sim.url}/v1")
    CatalogModelFactory(
        provider=provider,
        model_id="sim-precision",
        input_price_per_mtok=Decimal("5.00"),
        output_price_per_mtok=Decimal("15.00"),
    )
    CatalogModelFactory(
        provider=provider,
        model_id="sim-eco",
        input_price_per_mtok=Decimal("0.10"),
        output_price_per_mtok=Decimal("0.40"),
    )
    return provider


def add_form(provider, secret=GOOD_SECRET, scope="tenant", label="production"):
    return {"provider": provider.pk, "label": label, "secret": secret, "scope": scope}


# --- access ------------------------------------------------------------------------------------


def every_page_and_action(key: ProviderKey) -> list[tuple[str, str]]:
    return [
        ("get", LIST_URL),
        ("post", ADD_URL),
        ("post", toggle_url(key)),
        ("get", replace_url(key)),
        ("post", replace_url(key)),
        ("get", delete_url(key)),
        ("post", delete_url(key)),
    ]


def test_anonymous_visitors_are_sent_to_login(client, tenant):
    key = ProviderKeyFactory(tenant=tenant)

    for method, url in every_page_and_action(key):
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/?next="), url
    assert ProviderKey.objects.filter(pk=key.pk, is_enabled=True).exists()


def test_a_viewer_is_refused_every_page_and_action(client, tenant):
    key = ProviderKeyFactory(tenant=tenant)
    sign_in(client, tenant, "viewer")

    for method, url in every_page_and_action(key):
        assert getattr(client, method)(url).status_code == 403, url
    assert ProviderKey.objects.filter(pk=key.pk, is_enabled=True).exists()


def test_another_tenants_key_is_not_found(client, tenant, other_tenant):
    theirs = ProviderKeyFactory(tenant=other_tenant)
    sign_in(client, tenant, "owner")

    for method, url in every_page_and_action(theirs)[2:]:
        assert getattr(client, method)(url).status_code == 404, url
    assert ProviderKey.objects.filter(pk=theirs.pk, is_enabled=True).exists()


def test_a_key_for_another_tenants_custom_endpoint_is_refused(client, tenant, other_tenant, sim):
    ProviderFactory(name="A platform provider")
    theirs = ProviderFactory(tenant=other_tenant, base_url=f"{sim.url}/v1")
    sign_in(client, tenant, "owner")

    response = client.post(ADD_URL, add_form(theirs))

    assert "Select a valid choice" in response.content.decode()
    assert not ProviderKey.objects.exists()
    assert sim.log == []


def test_another_members_own_key_is_not_found_even_for_an_owner(client, tenant):
    colleague = MembershipFactory(tenant=tenant, role="member").user
    profile = end_user_for_login(tenant=tenant, user=colleague)
    theirs = ProviderKeyFactory(tenant=tenant, scope=KeyScope.USER, end_user=profile)
    sign_in(client, tenant, "owner")

    assert theirs.masked not in client.get(LIST_URL).content.decode()
    for method, url in every_page_and_action(theirs)[2:]:
        assert getattr(client, method)(url).status_code == 404, url


def test_a_member_sees_tenant_keys_but_may_not_change_them(client, tenant):
    key = ProviderKeyFactory(tenant=tenant)
    sign_in(client, tenant, "member")

    page = client.get(LIST_URL).content.decode()

    assert key.masked in page
    assert toggle_url(key) not in page
    assert delete_url(key) not in page
    for method, url in every_page_and_action(key)[2:]:
        assert getattr(client, method)(url).status_code == 403, url
    assert ProviderKey.objects.filter(pk=key.pk, is_enabled=True).exists()


# --- the list ----------------------------------------------------------------------------------


def test_the_list_shows_both_sections_masked_and_never_a_secret(
    client, tenant, django_assert_max_num_queries
):
    user = sign_in(client, tenant, "admin")
    profile = end_user_for_login(tenant=tenant, user=user)
    tenant_keys = [ProviderKeyFactory(tenant=tenant, label=f"team {n}") for n in range(3)]
    own = ProviderKeyFactory(
        tenant=tenant,
        scope=KeyScope.USER,
        end_user=profile,
        status=KeyStatus.INVALID,
        last_error="The provider rejected this key (401).",
    )
    secrets = [k.reveal_secret() for k in [*tenant_keys, own]]

    with django_assert_max_num_queries(12):
        response = client.get(LIST_URL)

    page = response.content.decode()
    assert response.status_code == 200
    assert "Tenant keys" in page
    assert "Your own keys" in page
    for key in [*tenant_keys, own]:
        assert key.masked in page
    assert "Invalid" in page
    assert "The provider rejected this key (401)." in page
    for secret in secrets:
        assert secret not in page


def test_an_empty_list_invites_the_first_key(client, tenant, sim_provider):
    sign_in(client, tenant, "owner")

    page = client.get(LIST_URL).content.decode()

    assert "No keys yet" in page
    assert "add your first provider key" in page.lower()


def test_the_provider_choice_offers_only_providers_a_key_can_be_checked_for(
    client, tenant, other_tenant
):
    usable = ProviderFactory(name="Usable")
    ProviderFactory(name="Switched off", is_enabled=False)
    ProviderFactory(name="Gemini native", protocol=WireProtocol.GEMINI)
    ProviderFactory(name="Their custom endpoint", tenant=other_tenant)
    own_custom = ProviderFactory(name="Our custom endpoint", tenant=tenant)
    sign_in(client, tenant, "owner")

    page = client.get(LIST_URL).content.decode()

    assert f'value="{usable.pk}"' in page
    assert f'value="{own_custom.pk}"' in page
    for name in ("Switched off", "Gemini native", "Their custom endpoint"):
        assert name not in page


# --- adding --------------------------------------------------------------------------------------


def test_adding_a_key_checks_it_live_on_the_cheapest_model_and_saves_it_active(
    client, tenant, sim, sim_provider
):
    user = sign_in(client, tenant, "owner")

    response = client.post(ADD_URL, add_form(sim_provider), follow=True)

    key = ProviderKey.objects.get(tenant=tenant)
    assert (key.scope, key.status, key.label) == (KeyScope.TENANT, KeyStatus.ACTIVE, "production")
    assert key.reveal_secret() == GOOD_SECRET
    assert key.last_validated_at is not None
    [check] = sim.log
    assert (check["api_key"], check["model"]) == (GOOD_SECRET, "sim-eco")
    actions = set(AuditLog.objects.filter(actor=user).values_list("action", flat=True))
    assert {"provider_key.added", "provider_key.validated"} <= actions
    page = response.content.decode()
    assert "works and is saved" in page
    assert key.masked in page
    assert GOOD_SECRET not in page


def test_a_key_of_a_provider_without_catalog_models_is_checked_with_the_models_list(
    client, tenant, sim
):
    provider = ProviderFactory(base_url=f"{sim.url}/v1")
    sign_in(client, tenant, "owner")

    client.post(ADD_URL, add_form(provider))

    assert ProviderKey.objects.get(tenant=tenant).status == KeyStatus.ACTIVE
    [check] = sim.log
    assert check["path"].endswith("/models")


def test_a_key_the_provider_rejects_is_explained_and_nothing_is_saved(
    client, tenant, sim, sim_provider
):
    sign_in(client, tenant, "owner")

    response = client.post(ADD_URL, add_form(sim_provider, secret=BAD_SECRET))

    page = response.content.decode()
    assert response.status_code == 200
    assert "The provider rejected this key (401)." in page
    assert "Nothing was saved." in page
    assert BAD_SECRET not in page
    assert not ProviderKey.objects.exists()
    # Nothing changed, but the refused attempt is on the record (without the key).
    assert list(AuditLog.objects.values_list("action", flat=True)) == ["provider_key.check_refused"]


def test_a_provider_that_does_not_answer_saves_nothing(client, tenant, sim, sim_provider):
    sim.script(["503"])
    sign_in(client, tenant, "owner")

    response = client.post(ADD_URL, add_form(sim_provider))

    assert "try again later" in response.content.decode()
    assert not ProviderKey.objects.exists()


def test_with_htmx_a_saved_key_reloads_the_page(client, tenant, sim, sim_provider):
    sign_in(client, tenant, "owner")

    response = client.post(ADD_URL, add_form(sim_provider), headers={"HX-Request": "true"})

    assert response.status_code == 204
    assert response["HX-Redirect"] == LIST_URL
    assert "works and is saved" in client.get(LIST_URL).content.decode()


def test_with_htmx_a_refusal_comes_back_in_the_form_and_leaves_no_message_behind(
    client, tenant, sim, sim_provider
):
    sign_in(client, tenant, "owner")

    response = client.post(
        ADD_URL, add_form(sim_provider, secret=BAD_SECRET), headers={"HX-Request": "true"}
    )

    page = response.content.decode()
    assert 'id="add-key"' in page
    assert "The provider rejected this key (401). Nothing was saved." in page
    assert BAD_SECRET not in page
    assert not ProviderKey.objects.exists()
    assert "not saved" not in client.get(LIST_URL).content.decode()


def test_a_member_adds_a_key_just_for_themself(client, tenant, sim, sim_provider):
    user = sign_in(client, tenant, "member")

    client.post(ADD_URL, add_form(sim_provider, scope="mine"))

    key = ProviderKey.objects.get(tenant=tenant)
    assert key.scope == KeyScope.USER
    assert key.end_user.user == user
    assert key.status == KeyStatus.ACTIVE


def test_a_member_cannot_add_a_tenant_key(client, tenant, sim, sim_provider):
    sign_in(client, tenant, "member")

    response = client.post(ADD_URL, add_form(sim_provider, scope="tenant"))

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not ProviderKey.objects.exists()
    assert sim.log == []


def test_invalid_input_says_what_is_missing_and_checks_nothing(client, tenant, sim, sim_provider):
    sign_in(client, tenant, "owner")

    response = client.post(ADD_URL, add_form(sim_provider, secret="   "))

    assert "This field is required." in response.content.decode()
    assert not ProviderKey.objects.exists()
    assert sim.log == []


def test_posting_without_a_csrf_token_is_refused(tenant, sim, sim_provider):
    client = Client(enforce_csrf_checks=True)
    sign_in(client, tenant, "owner")

    response = client.post(ADD_URL, add_form(sim_provider))

    assert response.status_code == 403
    assert not ProviderKey.objects.exists()
    assert sim.log == []


def test_the_add_form_carries_a_csrf_token_and_posts_with_it(tenant, sim, sim_provider):
    client = Client(enforce_csrf_checks=True)
    sign_in(client, tenant, "owner")
    client.get(LIST_URL)
    token = client.cookies["csrftoken"].value

    response = client.post(ADD_URL, {**add_form(sim_provider), "csrfmiddlewaretoken": token})

    assert response.status_code == 302
    assert ProviderKey.objects.filter(tenant=tenant).exists()


# --- enable / disable ---------------------------------------------------------------------------


def test_disabling_and_enabling_a_key_is_audited(client, tenant):
    key = ProviderKeyFactory(tenant=tenant)
    user = sign_in(client, tenant, "admin")

    response = client.post(toggle_url(key), {"enabled": "0"}, follow=True)

    key.refresh_from_db()
    assert not key.is_enabled
    assert "is disabled" in response.content.decode()
    client.post(toggle_url(key), {"enabled": "1"})
    key.refresh_from_db()
    assert key.is_enabled
    actions = list(
        AuditLog.objects.filter(actor=user, target_id=str(key.pk))
        .order_by("created_at", "pk")
        .values_list("action", flat=True)
    )
    assert actions == ["provider_key.disabled", "provider_key.enabled"]


def test_an_htmx_toggle_gets_the_keys_row_back(client, tenant):
    key = ProviderKeyFactory(tenant=tenant)
    sign_in(client, tenant, "owner")

    response = client.post(toggle_url(key), {"enabled": "0"}, headers={"HX-Request": "true"})

    row = response.content.decode()
    assert response.status_code == 200
    assert row.lstrip().startswith(f'<tr id="key-{key.pk}"')
    assert "Disabled" in row
    assert ">Enable<" in row
    assert key.reveal_secret() not in row


def test_a_member_disables_their_own_key(client, tenant):
    user = sign_in(client, tenant, "member")
    own = ProviderKeyFactory(
        tenant=tenant, scope=KeyScope.USER, end_user=end_user_for_login(tenant=tenant, user=user)
    )

    client.post(toggle_url(own), {"enabled": "0"})

    own.refresh_from_db()
    assert not own.is_enabled


# --- replacing ---------------------------------------------------------------------------------


def test_the_replace_page_never_shows_the_stored_secret(client, tenant):
    key = ProviderKeyFactory(tenant=tenant)
    sign_in(client, tenant, "owner")

    page = client.get(replace_url(key)).content.decode()

    assert key.masked in page
    assert key.reveal_secret() not in page
    assert 'type="password"' in page


def test_replacing_a_key_checks_the_new_secret_and_activates_it(client, tenant, sim, sim_provider):
    key = ProviderKeyFactory(tenant=tenant, provider=sim_provider, status=KeyStatus.INVALID)
    user = sign_in(client, tenant, "owner")

    response = client.post(replace_url(key), {"secret": GOOD_SECRET}, follow=True)

    key.refresh_from_db()
    assert key.reveal_secret() == GOOD_SECRET
    assert (key.status, key.last4) == (KeyStatus.ACTIVE, GOOD_SECRET[-4:])
    assert sim.log[-1]["api_key"] == GOOD_SECRET
    assert AuditLog.objects.filter(actor=user, action="provider_key.replaced").exists()
    assert GOOD_SECRET not in response.content.decode()


def test_a_rejected_replacement_keeps_the_stored_key(client, tenant, sim, sim_provider):
    key = ProviderKeyFactory(tenant=tenant, provider=sim_provider)
    stored = key.reveal_secret()
    sign_in(client, tenant, "owner")

    response = client.post(replace_url(key), {"secret": BAD_SECRET})

    page = response.content.decode()
    assert "The provider rejected this key (401)." in page
    assert "The stored key is unchanged." in page
    assert BAD_SECRET not in page
    assert stored not in page
    key.refresh_from_db()
    assert (key.reveal_secret(), key.status) == (stored, KeyStatus.ACTIVE)
    assert not AuditLog.objects.filter(action="provider_key.replaced").exists()


# --- deleting ----------------------------------------------------------------------------------


def test_deleting_asks_for_confirmation_first(client, tenant):
    key = ProviderKeyFactory(tenant=tenant)
    sign_in(client, tenant, "owner")

    page = client.get(delete_url(key))

    assert page.status_code == 200
    assert "Delete the" in page.content.decode()
    assert key.reveal_secret() not in page.content.decode()
    assert ProviderKey.objects.filter(pk=key.pk).exists()


def test_deleting_a_key_removes_it_and_audits_the_mask(client, tenant):
    key = ProviderKeyFactory(tenant=tenant)
    secret = key.reveal_secret()
    user = sign_in(client, tenant, "owner")

    response = client.post(delete_url(key), follow=True)

    assert not ProviderKey.objects.filter(pk=key.pk).exists()
    assert "is deleted" in response.content.decode()
    entry = AuditLog.objects.get(actor=user, action="provider_key.deleted")
    assert entry.changes == {"key": key.masked}
    assert secret not in str(entry.changes)
