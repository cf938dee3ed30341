"""Audit inventory, people and access: API keys created and revoked; members invited,
joining, changed and removed; invitations withdrawn; on the pages, the API and the admin."""

from __future__ import annotations

from django.urls import reverse

from tenants.models import AuditLog, Invitation, Membership, TenantAPIKey
from tenants.services import invite_member
from tests.factories import MembershipFactory, TenantAPIKeyFactory, UserFactory
from tests.tenants.audit_helpers import (
    api_key_client,
    api_session,
    browser,
    member_browser,
    recorded,
)

# --- API keys ------------------------------------------------------------------------------


def test_creating_an_api_key_on_the_page_records_its_scopes_never_the_key(tenant):
    client, owner = member_browser(tenant, "owner")

    response = client.post(
        reverse("tenants:api-key-create"),
        {"name": "support bot", "scopes": ["completions", "models"], "end_user": ""},
        follow=True,  # the key is shown by the GET the POST redirects to
    )

    raw = response.context["raw_key"]
    entry = recorded("api_key.created", tenant=tenant, actor=owner)
    assert entry.changes == {"scopes": ["completions", "models"]}
    assert raw not in f"{entry.changes} {entry.target_repr}"


def test_revoking_an_api_key_on_the_page_is_recorded(tenant):
    client, owner = member_browser(tenant, "admin")
    key = TenantAPIKeyFactory(tenant=tenant)

    client.post(reverse("tenants:api-key-revoke", args=[key.pk]))

    entry = recorded("api_key.revoked", tenant=tenant, actor=owner)
    assert entry.target_id == str(key.pk)


def test_api_keys_created_and_revoked_through_the_api_name_the_calling_key(tenant):
    client, caller = api_key_client(tenant)

    created = client.post(
        "/api/v1/api-keys", {"name": "batch job", "scopes": ["completions"]}, format="json"
    )
    client.post(f"/api/v1/api-keys/{created.json()['id']}/revoke")

    label = f"api-key:{caller.prefix}"
    assert recorded("api_key.created", tenant=tenant, actor_label=label).target_id == str(
        created.json()["id"]
    )
    recorded("api_key.revoked", tenant=tenant, actor_label=label)
    assert created.json()["key"] not in str(list(AuditLog.objects.values_list("changes")))


def test_revoking_api_keys_from_the_admin_is_recorded(staff_user, tenant):
    key = TenantAPIKeyFactory(tenant=tenant)
    client = browser(staff_user)

    client.post(
        reverse("admin:tenants_tenantapikey_changelist"),
        {"action": "revoke", "_selected_action": [key.pk]},
    )

    assert TenantAPIKey.objects.get(pk=key.pk).is_revoked
    recorded("api_key.revoked", tenant=tenant, actor=staff_user)


# --- invitations ---------------------------------------------------------------------------


def test_inviting_someone_on_the_page_is_recorded(tenant):
    client, owner = member_browser(tenant, "owner")

    client.post(reverse("tenants:member-invite"), {"email": "New@Example.com", "role": "admin"})

    entry = recorded("member.invited", tenant=tenant, actor=owner)
    assert entry.changes == {"email": "new@example.com", "role": "admin"}
    assert entry.target_id == str(Invitation.objects.get(tenant=tenant).pk)


def test_withdrawing_an_invitation_through_the_api_is_recorded(tenant, owner):
    invitation, _ = invite_member(tenant=tenant, email="late@example.com", role="member")

    api_session(owner).delete(f"/api/v1/invitations/{invitation.pk}")

    entry = recorded("member.invitation_revoked", tenant=tenant, actor=owner)
    assert entry.changes["email"] == "late@example.com"


def test_accepting_an_invitation_with_a_new_account_records_the_signup_and_the_join(tenant):
    _, token = invite_member(tenant=tenant, email="joiner@example.com", role="viewer")
    client = browser()

    response = client.post(
        reverse("tenants:invitation-accept", args=[token]),
        {
            "username": "joiner",
            "password1": "a-long-pass-phrase",
            "password2": "a-long-pass-phrase",
        },
    )

    assert response.status_code == 302, response.content.decode()[:1000]
    joiner = Membership.objects.get(tenant=tenant, user__username="joiner").user
    recorded("user.signed_up", tenant=tenant, actor=joiner)
    entry = recorded("member.joined", tenant=tenant, actor=joiner)
    assert entry.changes == {"email": "joiner@example.com", "role": "viewer"}
    assert token not in str(list(AuditLog.objects.values_list("changes", "target_repr")))


def test_accepting_an_invitation_signed_in_is_recorded(tenant):
    user = UserFactory(email="existing@example.com")
    _, token = invite_member(tenant=tenant, email=user.email, role="member")

    browser(user).post(reverse("tenants:invitation-accept", args=[token]))

    recorded("member.joined", tenant=tenant, actor=user)


# --- members -------------------------------------------------------------------------------


def test_changing_a_role_on_the_page_records_old_and_new(tenant):
    client, owner = member_browser(tenant, "owner")
    someone = MembershipFactory(tenant=tenant, role="member")

    client.post(reverse("tenants:member-role", args=[someone.pk]), {"role": "viewer"})

    entry = recorded("member.role_changed", tenant=tenant, actor=owner)
    assert entry.changes == {"role": ["member", "viewer"]}


def test_removing_a_member_through_the_api_is_recorded(tenant, owner):
    someone = MembershipFactory(tenant=tenant, role="viewer")

    api_session(owner).delete(f"/api/v1/members/{someone.pk}")

    entry = recorded("member.removed", tenant=tenant, actor=owner)
    assert entry.changes == {"user": someone.user.get_username(), "role": "viewer"}


def test_a_member_added_by_staff_in_the_admin_is_recorded(staff_user, tenant):
    newcomer = UserFactory()
    client = browser(staff_user)

    client.post(
        reverse("admin:tenants_membership_add"),
        {"tenant": tenant.pk, "user": newcomer.pk, "role": "admin"},
    )

    entry = recorded("member.created", tenant=tenant, actor=staff_user)
    assert entry.changes["role"] == [None, "admin"]
