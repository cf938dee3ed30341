"""The API keys page: managers only, the raw key shown once, revocation confirmed."""

from __future__ import annotations

import json

import pytest
from django.contrib.sessions.models import Session
from django.test import Client
from django.urls import reverse

from tenants.models import AuditLog, EndUser, TenantAPIKey, hash_api_key
from tests.factories import EndUserFactory, MembershipFactory, TenantAPIKeyFactory

LIST_URL = reverse("tenants:api-key-list")
CREATE_URL = reverse("tenants:api-key-create")


def revoke_url(key: TenantAPIKey) -> str:
    return reverse("tenants:api-key-revoke", args=[key.pk])


def sign_in(client: Client, tenant, role: str):
    user = MembershipFactory(tenant=tenant, role=role).user
    client.force_login(user)
    return user


def create_form(**fields):
    return {"name": "support bot", "scopes": ["completions", "models"], **fields}


def every_page_and_action(key: TenantAPIKey) -> list[tuple[str, str]]:
    return [
        ("get", LIST_URL),
        ("post", CREATE_URL),
        ("get", CREATE_URL),
        ("get", revoke_url(key)),
        ("post", revoke_url(key)),
    ]


def test_anonymous_visitors_are_sent_to_login(client, tenant):
    key = TenantAPIKeyFactory(tenant=tenant)

    for method, url in every_page_and_action(key):
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/?next="), url


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_are_refused(client, tenant, role):
    key = TenantAPIKeyFactory(tenant=tenant)
    sign_in(client, tenant, role)

    for method, url in every_page_and_action(key):
        assert getattr(client, method)(url).status_code == 403, url
    assert TenantAPIKey.objects.filter(tenant=tenant).count() == 1
    key.refresh_from_db()
    assert not key.is_revoked


def test_another_tenants_key_is_not_found(client, tenant, other_tenant):
    theirs = TenantAPIKeyFactory(tenant=other_tenant)
    sign_in(client, tenant, "owner")

    assert client.get(revoke_url(theirs)).status_code == 404
    assert client.post(revoke_url(theirs)).status_code == 404
    theirs.refresh_from_db()
    assert not theirs.is_revoked


def test_the_list_shows_each_key_by_its_prefix_only(
    client, tenant, other_tenant, django_assert_max_num_queries
):
    user = sign_in(client, tenant, "admin")
    bound = EndUserFactory(tenant=tenant, external_id="customer-42")
    keys = [
        TenantAPIKeyFactory(tenant=tenant, name="plain", created_by=user),
        TenantAPIKeyFactory(tenant=tenant, name="bound", end_user=bound, requests_per_minute=30),
        TenantAPIKeyFactory(tenant=tenant, name="old one"),
    ]
    revoked = keys[2]
    revoked.revoked_at = revoked.created_at
    revoked.save()
    theirs = TenantAPIKeyFactory(tenant=other_tenant, name="someone else's key")

    with django_assert_max_num_queries(10):
        response = client.get(LIST_URL)

    page = response.content.decode()
    assert response.status_code == 200
    for key in keys:
        assert key.name in page
        assert f"{key.prefix}…" in page
        assert key.raw_key not in page
    assert "customer-42" in page
    assert "Revoked" in page
    assert "Chat completions" in page
    assert theirs.name not in page


def test_an_empty_list_says_what_keys_are_for(client, tenant):
    sign_in(client, tenant, "owner")

    assert "No API keys yet" in client.get(LIST_URL).content.decode()


def test_a_new_key_is_shown_once_with_a_copy_button_and_a_snippet(client, tenant, settings):
    settings.SWITCHYARD_PUBLIC_URL = "https://gateway.example.com/"
    user = sign_in(client, tenant, "owner")

    created = client.post(CREATE_URL, create_form())
    assert (created.status_code, created["Location"]) == (302, CREATE_URL)
    response = client.get(CREATE_URL)

    page = response.content.decode()
    key = TenantAPIKey.objects.get(tenant=tenant)
    raw = page.split('<code id="raw-key">', 1)[1].split("</code>", 1)[0]
    assert raw.startswith("sy-")
    assert key.key_hash == hash_api_key(raw)
    assert key.scopes == ["completions", "models"]
    assert key.created_by == user
    assert 'class="secret-once"' in page
    assert 'data-copy="raw-key"' in page
    assert 'base_url="https://gateway.example.com/v1"' in page
    assert "no-store" in response["Cache-Control"]
    assert AuditLog.objects.filter(actor=user, action="api_key.created").exists()

    later = client.get(LIST_URL).content.decode()
    assert raw not in later
    assert f"{key.prefix}…" in later


def test_reloading_the_new_key_page_neither_creates_nor_shows_a_key_again(client, tenant):
    sign_in(client, tenant, "owner")
    client.post(CREATE_URL, create_form())
    # Between the POST and the GET the key waits in the session (a database row), encrypted.
    stored = json.dumps(Session.objects.get(session_key=client.session.session_key).get_decoded())
    shown = client.get(CREATE_URL).content.decode()
    raw = shown.split('<code id="raw-key">', 1)[1].split("</code>", 1)[0]

    reloaded = client.get(CREATE_URL, follow=True)

    assert raw.startswith("sy-")
    assert "api_key_to_show_once" in stored
    assert raw not in stored
    assert raw[3:20] not in stored
    assert reloaded.redirect_chain == [(LIST_URL, 302)]
    assert raw not in reloaded.content.decode()
    assert "A new key is shown once" in reloaded.content.decode()
    assert TenantAPIKey.objects.filter(tenant=tenant).count() == 1


def test_a_key_bound_to_a_new_end_user_creates_them(client, tenant):
    sign_in(client, tenant, "admin")

    client.post(CREATE_URL, create_form(end_user="customer-7", requests_per_minute="20"))

    key = TenantAPIKey.objects.get(tenant=tenant)
    assert key.end_user == EndUser.objects.get(tenant=tenant, external_id="customer-7")
    assert key.requests_per_minute == 20


def test_a_key_bound_to_a_known_end_user_reuses_them(client, tenant):
    known = EndUserFactory(tenant=tenant, external_id="customer-8")
    sign_in(client, tenant, "owner")

    client.post(CREATE_URL, create_form(end_user="customer-8"))

    assert TenantAPIKey.objects.get(tenant=tenant).end_user == known
    assert EndUser.objects.filter(tenant=tenant, external_id="customer-8").count() == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": ""}, "This field is required."),
        ({"scopes": []}, "Choose at least one scope"),
        ({"scopes": ["root"]}, "Select a valid choice"),
        ({"requests_per_minute": "0"}, "greater than or equal to 1"),
    ],
)
def test_invalid_input_is_explained_and_creates_nothing(client, tenant, fields, message):
    sign_in(client, tenant, "owner")

    response = client.post(CREATE_URL, create_form(**fields))

    page = response.content.decode()
    assert response.status_code == 200
    assert message in page
    assert "Nothing was created" in page
    assert not TenantAPIKey.objects.exists()


def test_a_per_key_limit_above_the_plans_is_refused(client, tenant):
    tenant.plan.requests_per_minute = 60
    tenant.plan.save()
    sign_in(client, tenant, "owner")

    response = client.post(CREATE_URL, create_form(requests_per_minute="100"))

    assert "Your plan allows 60 requests per minute" in response.content.decode()
    assert not TenantAPIKey.objects.exists()


def test_revoking_asks_for_confirmation_then_revokes(client, tenant):
    key = TenantAPIKeyFactory(tenant=tenant, name="to revoke")
    user = sign_in(client, tenant, "owner")

    confirm = client.get(revoke_url(key))
    key.refresh_from_db()
    assert confirm.status_code == 200
    assert "Revoke “to revoke”?" in confirm.content.decode()
    assert not key.is_revoked

    response = client.post(revoke_url(key), follow=True)

    key.refresh_from_db()
    assert key.is_revoked
    assert "is revoked" in response.content.decode()
    assert AuditLog.objects.filter(actor=user, action="api_key.revoked").exists()


def test_creating_without_a_csrf_token_is_refused(tenant):
    client = Client(enforce_csrf_checks=True)
    sign_in(client, tenant, "owner")

    response = client.post(CREATE_URL, create_form())

    assert response.status_code == 403
    assert not TenantAPIKey.objects.exists()
