"""Hostile use of the tenant pages and the admin: forged cross-site posts, odd form values,
redirects off-site, a staff door pushed by non-staff. Each is refused or answered without a
server error, and nothing is written.

Security headers and escaping are test_web_headers.py's and test_escaping.py's; log-in
throttling is test_auth_throttle.py's.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from providers.choices import KeyStatus
from providers.models import ProviderKey
from tenants.api.tenancy import SESSION_TENANT_KEY
from tenants.models import AuditLog, Invitation
from tests.factories import (
    TEST_PASSWORD,
    EndUserFactory,
    MembershipFactory,
    ProviderKeyFactory,
    SpendingCapFactory,
    TenantAPIKeyFactory,
    TenantFactory,
    UserFactory,
)
from tests.security.clients import stored


@pytest.fixture
def rows(tenant):
    """One of everything a tenant page can act on, in the tenant's own data."""
    invitation = Invitation(
        tenant=tenant, email="invitee@example.com", expires_at=timezone.now() + timedelta(days=7)
    )
    invitation.set_token(Invitation.generate_token())
    invitation.save()
    return {
        "provider_key": ProviderKeyFactory(tenant=tenant, label="ours"),
        "api_key": TenantAPIKeyFactory(tenant=tenant),
        "membership": MembershipFactory(tenant=tenant, role="member"),
        "invitation": invitation,
        "cap": SpendingCapFactory(
            tenant=tenant, scope="user", end_user=EndUserFactory(tenant=tenant)
        ),
    }


# (URL name, the row its id names or None, a body that would succeed with a token)
PAGE_FORMS = [
    ("providers:key-add", None, {"provider": "1", "scope": "tenant", "secret": "sk-x-0001"}),
    ("providers:key-set-enabled", "provider_key", {"enabled": "0"}),
    ("providers:key-replace", "provider_key", {"secret": "sk-new-0001"}),
    ("providers:key-delete", "provider_key", {}),
    ("tenants:api-key-create", None, {"name": "forged", "scopes": ["completions"]}),
    ("tenants:api-key-revoke", "api_key", {}),
    ("tenants:member-invite", None, {"email": "mallory@example.com", "role": "owner"}),
    ("tenants:member-role", "membership", {"role": "owner"}),
    ("tenants:member-remove", "membership", {}),
    ("tenants:invitation-revoke", "invitation", {}),
    ("routing:settings-tenant", None, {"power_level": "precision"}),
    ("routing:settings-mine", None, {"power_level": "precision"}),
    ("usage:tenant-cap", None, {"tenant-amount_usd": "0.01", "tenant-mode": "hard"}),
    ("usage:each-user-cap", None, {"each-amount_usd": "0.01", "each-mode": "hard"}),
    ("usage:user-cap-add", None, {"user-end_user": "x", "user-amount_usd": "1"}),
    ("usage:user-cap-edit", "cap", {"cap-amount_usd": "0.01", "cap-mode": "hard"}),
    ("usage:user-cap-set-enabled", "cap", {"enabled": "0"}),
]


@pytest.mark.parametrize(
    ("name", "row", "body"), PAGE_FORMS, ids=[name.split(":")[1] for name, _, _ in PAGE_FORMS]
)
def test_every_page_form_refuses_a_post_without_a_csrf_token(tenant, rows, name, row, body):
    client = Client(enforce_csrf_checks=True)
    client.force_login(MembershipFactory(tenant=tenant, role="owner").user)
    url = reverse(name, args=[rows[row].pk] if row else [])
    before = stored()

    response = client.post(url, body)

    assert response.status_code == 403
    assert b"CSRF" in response.content or b"Forbidden" in response.content
    assert stored() == before


def test_a_csrf_token_from_another_session_is_refused(tenant, rows):
    victim = Client(enforce_csrf_checks=True)
    victim.force_login(MembershipFactory(tenant=tenant, role="owner").user)
    attacker = Client(enforce_csrf_checks=True)
    attacker.force_login(MembershipFactory(tenant=tenant, role="viewer").user)
    attacker.get(reverse("usage:spending"))
    stolen = attacker.cookies["csrftoken"].value
    victim.get(reverse("usage:spending"))
    before = stored()

    response = victim.post(
        reverse("tenants:api-key-revoke", args=[rows["api_key"].pk]),
        {"csrfmiddlewaretoken": stolen},
    )

    assert response.status_code == 403
    assert stored() == before


@pytest.mark.parametrize("value", ["abc", "%00", "\u00b2", "9" * 30, ""])
def test_switching_to_a_tenant_named_by_anything_but_an_id_is_refused(client, tenant, value):
    other = TenantFactory(slug="also-mine")
    user = MembershipFactory(tenant=tenant, role="owner").user
    MembershipFactory(tenant=other, user=user, role="owner")
    client.force_login(user)
    client.get(reverse("providers:key-list"))
    chosen = client.session[SESSION_TENANT_KEY]

    response = client.post(reverse("switch-tenant"), {"tenant": value}, follow=True)

    assert response.status_code == 200
    assert "You are not a member of that tenant." in response.content.decode()
    assert client.session[SESSION_TENANT_KEY] == chosen


@pytest.mark.parametrize(
    ("field", "form"),
    [
        ("system_prompt", {"power_level": "eco", "system_prompt": "be\u0000evil"}),
        ("name", {"name": "bot\u0000", "scopes": ["completions"]}),
        ("end_user", {"user-end_user": "eve\u0000", "user-amount_usd": "5", "user-mode": "hard"}),
    ],
)
def test_a_nul_byte_in_a_page_form_is_a_form_error_not_a_database_error(
    client, tenant, field, form
):
    client.force_login(MembershipFactory(tenant=tenant, role="owner").user)
    url = {
        "system_prompt": reverse("routing:settings-tenant"),
        "name": reverse("tenants:api-key-create"),
        "end_user": reverse("usage:user-cap-add"),
    }[field]
    before = stored()

    response = client.post(url, form)

    assert response.status_code in (200, 400)
    assert "Null characters are not allowed." in response.content.decode()
    assert stored() == before


@pytest.mark.parametrize(
    "token",
    ["%00", "x" * 3000, "..%2F..%2Fadmin%2F", "' OR '1'='1"],
    ids=["nul", "3000", "dots", "sql"],
)
def test_a_hostile_invitation_link_is_not_found(client, tenant, token):
    before = stored()

    response = client.get(f"/invitations/{token}/")

    assert response.status_code == 404
    assert stored() == before


def test_logging_in_never_redirects_off_site(client, member):
    response = client.post(
        f"{reverse('login')}?next=https://evil.example/",
        {"username": member.username, "password": TEST_PASSWORD},
    )

    assert response.status_code == 302
    assert response["Location"] == "/"


def test_logging_in_gives_a_new_session_key(client, member):
    client.get(reverse("login"))
    client.session.save()
    before = client.session.session_key

    client.post(reverse("login"), {"username": member.username, "password": TEST_PASSWORD})

    assert client.session.session_key != before
    assert client.session["_auth_user_id"] == str(member.pk)


def test_a_password_reset_does_not_say_whether_an_address_has_an_account(
    client, member, mailoutbox
):
    known = client.post(reverse("password_reset"), {"email": member.email})
    unknown = client.post(reverse("password_reset"), {"email": "nobody@example.com"})

    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
    assert [m.to for m in mailoutbox] == [[member.email]]


# --- the admin --------------------------------------------------------------------------------


def test_a_member_posting_an_admin_action_is_sent_to_log_in_and_nothing_runs(client, tenant, sim):
    key = ProviderKeyFactory(tenant=tenant, status=KeyStatus.PENDING)
    client.force_login(MembershipFactory(tenant=tenant, role="owner").user)

    response = client.post(
        reverse("admin:providers_providerkey_changelist"),
        {"action": "test_keys", "_selected_action": [key.pk]},
    )

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    key.refresh_from_db()
    assert key.status == KeyStatus.PENDING
    assert not AuditLog.objects.exists()
    assert sim.log == []


def test_staff_without_permissions_cannot_open_provider_keys(client, tenant):
    key = ProviderKeyFactory(tenant=tenant, secret="sk-staff-eyes-only-0001")
    client.force_login(UserFactory(is_staff=True, is_superuser=False))

    for url in (
        reverse("admin:providers_providerkey_changelist"),
        reverse("admin:providers_providerkey_change", args=[key.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 403, url
        assert b"sk-staff-eyes-only-0001" not in response.content
    response = client.post(
        reverse("admin:providers_providerkey_changelist"),
        {"action": "delete_selected", "_selected_action": [key.pk], "post": "yes"},
    )
    assert response.status_code == 403
    assert ProviderKey.objects.filter(pk=key.pk).exists()


def test_a_deactivated_staff_member_loses_the_admin_at_once(client, staff_user):
    client.force_login(staff_user)
    assert client.get(reverse("admin:index")).status_code == 200

    staff_user.is_active = False
    staff_user.save()

    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_the_admin_log_in_refuses_a_members_right_password(client, member):
    response = client.post(
        reverse("admin:login"), {"username": member.username, "password": TEST_PASSWORD}
    )

    assert response.status_code == 200
    assert "staff account" in response.content.decode()
    assert client.get(reverse("admin:index")).status_code == 302


HOSTILE_QUERIES = [
    "q=%00",
    "q=" + "x" * 3000,
    "q=%27%20OR%201%3D1%20--",
    "o=999",
    "o=-abc.def",
    "p=99999999999999999999",
    "created_at__year=abc",
    "tenant__id__exact=abc",
    "tenant__id__exact=99999999999999999999",
    "_changelist_filters=%00",
]


def test_no_admin_changelist_answers_a_hostile_query_with_a_server_error(client, staff_user, rows):
    client.force_login(staff_user)
    client.raise_request_exception = False
    checked = 0
    for model in admin.site._registry:
        try:
            url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        except NoReverseMatch:
            continue
        for query in HOSTILE_QUERIES:
            response = client.get(f"{url}?{query}")
            assert response.status_code in (200, 302), (url, query, response.status_code)
            checked += 1
        for bad_id in ("%00", "99999999999999999999", "abc"):
            response = client.get(f"{url}{bad_id}/change/")
            assert response.status_code in (302, 404), (url, bad_id, response.status_code)
    assert checked > 100
