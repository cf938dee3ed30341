"""The members page and invitations: roles, the last owner, the emailed link."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tenants import services
from tenants.api.tenancy import SESSION_TENANT_KEY
from tenants.models import AuditLog, Invitation, Membership
from tests.factories import TEST_PASSWORD, MembershipFactory, UserFactory

LIST_URL = reverse("tenants:member-list")
INVITE_URL = reverse("tenants:member-invite")
NEW_PASSWORD = "a-long-and-unusual-passphrase-91"


def role_url(membership: Membership) -> str:
    return reverse("tenants:member-role", args=[membership.pk])


def remove_url(membership: Membership) -> str:
    return reverse("tenants:member-remove", args=[membership.pk])


def withdraw_url(invitation: Invitation) -> str:
    return reverse("tenants:invitation-revoke", args=[invitation.pk])


def sign_in(client: Client, tenant, role: str) -> Membership:
    membership = MembershipFactory(tenant=tenant, role=role)
    client.force_login(membership.user)
    return membership


def invite(tenant, *, email="new.person@example.com", role="member", actor=None):
    return services.invite_member(tenant=tenant, email=email, role=role, actor=actor)


def link_token(body: str) -> str:
    """The token of the invitation link in an email body."""
    return body.split("/invitations/", 1)[1].split("/", 1)[0]


def every_page_and_action(membership: Membership, invitation: Invitation):
    return [
        ("get", LIST_URL),
        ("post", INVITE_URL),
        ("post", role_url(membership)),
        ("get", remove_url(membership)),
        ("post", remove_url(membership)),
        ("get", withdraw_url(invitation)),
        ("post", withdraw_url(invitation)),
    ]


# --- access ------------------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_login(client, tenant):
    target = MembershipFactory(tenant=tenant, role="member")
    invitation, _ = invite(tenant)

    for method, url in every_page_and_action(target, invitation):
        response = getattr(client, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/?next="), url


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_are_refused(client, tenant, role):
    target = MembershipFactory(tenant=tenant, role="member")
    invitation, _ = invite(tenant)
    sign_in(client, tenant, role)

    for method, url in every_page_and_action(target, invitation):
        response = getattr(client, method)(url, {"role": "owner", "email": "x@example.com"})
        assert response.status_code == 403, url
    assert Membership.objects.filter(pk=target.pk, role="member").exists()
    assert Invitation.objects.filter(pk=invitation.pk).exists()


def test_another_tenants_member_and_invitation_are_not_found(client, tenant, other_tenant):
    theirs = MembershipFactory(tenant=other_tenant, role="member")
    their_invitation, _ = invite(other_tenant)
    sign_in(client, tenant, "owner")

    for method, url in every_page_and_action(theirs, their_invitation)[2:]:
        assert getattr(client, method)(url, {"role": "viewer"}).status_code == 404, url
    assert Membership.objects.filter(pk=theirs.pk, role="member").exists()
    assert Invitation.objects.filter(pk=their_invitation.pk).exists()


# --- the list ----------------------------------------------------------------------------------


def test_the_list_shows_members_roles_and_open_invitations(
    client, tenant, other_tenant, django_assert_max_num_queries
):
    me = sign_in(client, tenant, "owner")
    others = [MembershipFactory(tenant=tenant, role=r) for r in ("admin", "member", "viewer")]
    stranger = MembershipFactory(tenant=other_tenant, role="owner")
    invite(tenant, email="pending@example.com", actor=me.user)
    invite(tenant, email="second@example.com", role="viewer", actor=me.user)

    with django_assert_max_num_queries(10):
        response = client.get(LIST_URL)

    page = response.content.decode()
    assert response.status_code == 200
    for membership in [me, *others]:
        assert membership.user.username in page
    assert stranger.user.username not in page
    assert "pending@example.com" in page
    assert "second@example.com" in page
    assert "(you)" in page
    assert "last owner" in page


def test_without_invitations_the_page_says_how_to_invite(client, tenant):
    sign_in(client, tenant, "admin")

    assert "No open invitations" in client.get(LIST_URL).content.decode()


def test_an_admin_is_not_offered_the_owner_role(client, tenant):
    sign_in(client, tenant, "admin")
    MembershipFactory(tenant=tenant, role="member")

    page = client.get(LIST_URL).content.decode()

    assert '<option value="owner"' not in page


# --- roles -------------------------------------------------------------------------------------


def test_an_owner_changes_a_role_and_it_is_audited(client, tenant):
    owner = sign_in(client, tenant, "owner")
    target = MembershipFactory(tenant=tenant, role="member")

    response = client.post(role_url(target), {"role": "admin"}, follow=True)

    target.refresh_from_db()
    assert target.role == "admin"
    assert "is now admin" in response.content.decode()
    entry = AuditLog.objects.get(actor=owner.user, action="member.role_changed")
    assert entry.changes == {"role": ["member", "admin"]}


def test_only_an_owner_makes_owners(client, tenant):
    MembershipFactory(tenant=tenant, role="owner")
    sign_in(client, tenant, "admin")
    target = MembershipFactory(tenant=tenant, role="member")

    response = client.post(role_url(target), {"role": "owner"}, follow=True)

    target.refresh_from_db()
    assert target.role == "member"
    assert "Only an owner can" in response.content.decode()


def test_an_admin_cannot_demote_or_remove_an_owner(client, tenant):
    owner = MembershipFactory(tenant=tenant, role="owner")
    MembershipFactory(tenant=tenant, role="owner")
    sign_in(client, tenant, "admin")

    client.post(role_url(owner), {"role": "viewer"})
    client.post(remove_url(owner))

    owner.refresh_from_db()
    assert owner.role == "owner"


def test_the_last_owner_cannot_be_demoted(client, tenant):
    owner = sign_in(client, tenant, "owner")

    response = client.post(role_url(owner), {"role": "admin"}, follow=True)

    owner.refresh_from_db()
    assert owner.role == "owner"
    assert "is the last owner" in response.content.decode()


def test_the_last_owner_cannot_be_removed(client, tenant):
    owner = sign_in(client, tenant, "owner")

    response = client.post(remove_url(owner), follow=True)

    assert Membership.objects.filter(pk=owner.pk, role="owner").exists()
    assert "is the last owner" in response.content.decode()


def test_with_two_owners_one_may_step_down(client, tenant):
    me = sign_in(client, tenant, "owner")
    MembershipFactory(tenant=tenant, role="owner")

    response = client.post(role_url(me), {"role": "admin"})

    me.refresh_from_db()
    assert me.role == "admin"
    assert response["Location"] == LIST_URL


def test_the_last_owner_rule_is_enforced_in_the_service(tenant):
    owner = MembershipFactory(tenant=tenant, role="owner")

    with pytest.raises(services.MembershipRuleError):
        services.change_member_role(tenant=tenant, membership=owner, role="member")
    with pytest.raises(services.MembershipRuleError):
        services.remove_member(tenant=tenant, membership=owner)


def test_an_unknown_role_changes_nothing(client, tenant):
    sign_in(client, tenant, "owner")
    target = MembershipFactory(tenant=tenant, role="member")

    response = client.post(role_url(target), {"role": "emperor"}, follow=True)

    target.refresh_from_db()
    assert target.role == "member"
    assert "Choose one of the roles." in response.content.decode()


# --- removing ----------------------------------------------------------------------------------


def test_removing_asks_for_confirmation_then_removes(client, tenant):
    owner = sign_in(client, tenant, "owner")
    target = MembershipFactory(tenant=tenant, role="member")

    confirm = client.get(remove_url(target))
    assert confirm.status_code == 200
    assert f"Remove {target.user.username}" in confirm.content.decode()
    assert Membership.objects.filter(pk=target.pk).exists()

    response = client.post(remove_url(target), follow=True)

    assert not Membership.objects.filter(pk=target.pk).exists()
    assert "is no longer in" in response.content.decode()
    assert AuditLog.objects.filter(actor=owner.user, action="member.removed").exists()


# --- invitations -------------------------------------------------------------------------------


def test_invite_email_accept_as_a_new_user_gives_the_role(
    client, tenant, settings, django_capture_on_commit_callbacks
):
    settings.SWITCHYARD_PUBLIC_URL = "https://gateway.example.com"
    owner = sign_in(client, tenant, "owner")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(INVITE_URL, {"email": "New.Person@Example.com", "role": "admin"})

    assert response.status_code == 302
    [email] = mail.outbox
    assert email.to == ["new.person@example.com"]
    assert tenant.name in email.subject
    assert "https://gateway.example.com/invitations/" in email.body
    token = link_token(email.body)
    invitation = Invitation.objects.get(tenant=tenant)
    assert invitation.token_hash != token
    assert token not in str(AuditLog.objects.filter(action="member.invited").values())
    assert invitation.invited_by == owner.user
    lifetime = invitation.expires_at - invitation.created_at
    assert abs(lifetime - timedelta(days=7)) < timedelta(minutes=1)

    newcomer = Client()
    page = newcomer.get(f"/invitations/{token}/")
    assert page.status_code == 200
    assert f"Join {tenant.name}" in page.content.decode()
    response = newcomer.post(
        f"/invitations/{token}/",
        {"username": "newperson", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 302
    user = get_user_model().objects.get(username="newperson")
    assert user.email == "new.person@example.com"
    assert user.check_password(NEW_PASSWORD)
    assert Membership.objects.get(tenant=tenant, user=user).role == "admin"
    assert newcomer.session[SESSION_TENANT_KEY] == tenant.pk
    invitation.refresh_from_db()
    assert invitation.accepted_at is not None
    assert newcomer.get(reverse("tenants:member-list")).status_code == 200


def test_a_signed_in_user_accepts_with_one_click(client, tenant):
    token = invite(tenant, email="someone@example.com", role="viewer")[1]
    user = UserFactory(email="someone@example.com")
    client.force_login(user)

    page = client.get(f"/invitations/{token}/").content.decode()
    assert f"Join {tenant.name}" in page
    assert user.username in page

    response = client.post(f"/invitations/{token}/")

    assert response.status_code == 302
    assert Membership.objects.get(tenant=tenant, user=user).role == "viewer"
    assert AuditLog.objects.filter(actor=user, action="member.joined").exists()


def test_a_current_member_accepting_keeps_their_role(client, tenant):
    owner = MembershipFactory(tenant=tenant, role="owner")
    token = invite(tenant, email="owner-alias@example.com", role="viewer")[1]
    client.force_login(owner.user)

    response = client.post(f"/invitations/{token}/", follow=True)

    owner.refresh_from_db()
    assert owner.role == "owner"
    assert "You already belong to" in response.content.decode()


def test_an_expired_invitation_is_refused_and_says_why(client, tenant):
    invitation, token = invite(tenant)
    invitation.expires_at = timezone.now() - timedelta(minutes=1)
    invitation.save()

    response = client.get(f"/invitations/{token}/")
    assert response.status_code == 410
    assert "expired" in response.content.decode()

    response = client.post(
        f"/invitations/{token}/",
        {"username": "late", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 410
    assert not get_user_model().objects.filter(username="late").exists()


def test_a_used_invitation_is_refused(client, tenant):
    token = invite(tenant)[1]
    first = UserFactory()
    services.accept_invitation(token=token, user=first)
    client.force_login(UserFactory())

    response = client.post(f"/invitations/{token}/")

    assert response.status_code == 410
    assert "already been used" in response.content.decode()
    assert Membership.objects.filter(tenant=tenant).count() == 1


def test_an_unknown_invitation_link_is_not_found(client, db):
    response = client.get("/invitations/not-a-real-token/")

    assert response.status_code == 404
    assert "not valid" in response.content.decode()


def test_a_weak_password_or_a_taken_username_creates_nothing(client, tenant):
    token = invite(tenant)[1]
    UserFactory(username="taken")

    weak = client.post(
        f"/invitations/{token}/", {"username": "fresh", "password1": "123", "password2": "123"}
    )
    taken = client.post(
        f"/invitations/{token}/",
        {"username": "Taken", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert "This password is too short" in weak.content.decode()
    assert "That username is taken" in taken.content.decode()
    assert not get_user_model().objects.filter(username="fresh").exists()
    assert not Membership.objects.filter(tenant=tenant).exists()
    assert Invitation.objects.get(tenant=tenant).accepted_at is None


def test_only_an_owner_invites_owners(client, tenant):
    sign_in(client, tenant, "admin")

    response = client.post(INVITE_URL, {"email": "boss@example.com", "role": "owner"})

    assert response.status_code == 200
    assert "Select a valid choice" in response.content.decode()
    assert not Invitation.objects.exists()
    with pytest.raises(services.MembershipRuleError):
        services.invite_member(
            tenant=tenant,
            email="boss@example.com",
            role="owner",
            actor=Membership.objects.get(tenant=tenant).user,
        )


def test_with_htmx_a_sent_invitation_reloads_the_page(client, tenant):
    sign_in(client, tenant, "owner")

    response = client.post(
        INVITE_URL, {"email": "x@example.com", "role": "member"}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 204
    assert response["HX-Redirect"] == LIST_URL
    assert Invitation.objects.filter(tenant=tenant, email="x@example.com").exists()


def test_inviting_a_current_member_is_explained(client, tenant):
    sign_in(client, tenant, "owner")
    MembershipFactory(tenant=tenant, user=UserFactory(email="here@example.com"))

    response = client.post(INVITE_URL, {"email": "here@example.com", "role": "member"})

    assert "is already a member" in response.content.decode()
    assert "No invitation was sent" in response.content.decode()
    assert not Invitation.objects.exists()


def test_inviting_again_replaces_the_old_link(tenant):
    old_token = invite(tenant)[1]
    new_token = invite(tenant)[1]

    with pytest.raises(services.InvitationError):
        services.invitation_for_token(token=old_token)
    assert services.invitation_for_token(token=new_token).email == "new.person@example.com"


def test_withdrawing_an_invitation_needs_confirmation_and_kills_the_link(client, tenant):
    owner = sign_in(client, tenant, "owner")
    invitation, token = invite(tenant)

    assert client.get(withdraw_url(invitation)).status_code == 200
    assert Invitation.objects.filter(pk=invitation.pk).exists()
    client.post(withdraw_url(invitation))

    assert not Invitation.objects.filter(pk=invitation.pk).exists()
    assert Client().get(f"/invitations/{token}/").status_code == 404
    assert AuditLog.objects.filter(actor=owner.user, action="member.invitation_revoked").exists()


def test_inviting_without_a_csrf_token_is_refused(tenant):
    client = Client(enforce_csrf_checks=True)
    sign_in(client, tenant, "owner")

    response = client.post(INVITE_URL, {"email": "x@example.com", "role": "member"})

    assert response.status_code == 403
    assert not Invitation.objects.exists()


def test_accepting_as_a_new_user_needs_a_csrf_token(tenant):
    token = invite(tenant)[1]
    client = Client(enforce_csrf_checks=True)

    response = client.post(
        f"/invitations/{token}/",
        {"username": "csrfless", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )

    assert response.status_code == 403
    assert not get_user_model().objects.filter(username="csrfless").exists()


def test_a_removed_member_loses_the_pages(client, tenant):
    sign_in(client, tenant, "owner")
    target = MembershipFactory(tenant=tenant, role="admin")
    client.post(remove_url(target))

    other = Client()
    other.login(username=target.user.username, password=TEST_PASSWORD)

    assert other.get(LIST_URL).status_code == 403
