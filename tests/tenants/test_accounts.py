"""Login, logout, password reset and the tenant switcher."""

from __future__ import annotations

from django.core import mail

from tenants.api.tenancy import SESSION_TENANT_KEY
from tests.factories import TEST_PASSWORD, MembershipFactory, TenantFactory


def test_login_page_renders_and_a_member_logs_in(client, member):
    page = client.get("/login/")
    assert page.status_code == 200
    assert b"Log in to Switchyard" in page.content

    response = client.post("/login/", {"username": member.username, "password": TEST_PASSWORD})

    assert response.status_code == 302
    assert client.get("/").status_code in (200, 302)


def test_a_wrong_password_says_so_and_logs_nobody_in(client, member):
    response = client.post("/login/", {"username": member.username, "password": "nope"})

    assert response.status_code == 200
    assert b"didn&#x27;t match" in response.content or b"didn't match" in response.content
    assert "_auth_user_id" not in client.session


def test_anonymous_visitors_are_sent_to_login(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_logout_requires_post_and_ends_the_session(client, member):
    client.force_login(member)
    assert client.get("/logout/").status_code == 405

    response = client.post("/logout/")

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_password_reset_sends_a_link_by_email(client, member):
    response = client.post("/password-reset/", {"email": member.email})

    assert response.status_code == 302
    assert len(mail.outbox) == 1
    assert "/password-reset/" in mail.outbox[0].body


def test_the_switcher_changes_tenant_only_to_ones_the_user_belongs_to(client, member, tenant):
    second = TenantFactory(slug="second")
    MembershipFactory(tenant=second, user=member, role="viewer")
    stranger = TenantFactory(slug="stranger")
    client.force_login(member)
    client.get("/")

    client.post("/switch-tenant/", {"tenant": second.pk})
    assert client.session[SESSION_TENANT_KEY] == second.pk

    client.post("/switch-tenant/", {"tenant": stranger.pk})
    assert client.session[SESSION_TENANT_KEY] == second.pk


def test_the_switcher_never_redirects_off_site(client, member, tenant):
    client.force_login(member)

    response = client.post(
        "/switch-tenant/", {"tenant": tenant.pk, "next": "https://evil.example/"}
    )

    assert response["Location"] == "/"


def test_a_user_without_a_tenant_is_told_so(client, db):
    from tests.factories import UserFactory

    client.force_login(UserFactory())

    response = client.get("/")

    assert response.status_code == 403
    assert b"not in a tenant" in response.content
