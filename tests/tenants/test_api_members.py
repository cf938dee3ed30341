"""/api/v1/members and /api/v1/invitations: invite, change roles, remove; owners stay."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tenants.choices import Role
from tenants.models import AuditLog, Invitation, Membership
from tenants.services import invite_member
from tests.factories import EndUserFactory, MembershipFactory, TenantAPIKeyFactory

URL = "/api/v1/members"
INVITE = "/api/v1/members/invite"
INVITATIONS = "/api/v1/invitations"


def detail_url(membership) -> str:
    return f"{URL}/{membership.pk}"


def signed_in(tenant, role: str):
    membership = MembershipFactory(tenant=tenant, role=role)
    client = APIClient()
    client.force_login(membership.user)
    client.membership = membership
    return client


def with_key(tenant, scopes=("manage",), end_user=None):
    key = TenantAPIKeyFactory(tenant=tenant, scopes=list(scopes), end_user=end_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")
    return client


def routes(membership, invitation) -> list[tuple[str, str, dict]]:
    return [
        ("get", URL, {}),
        ("post", INVITE, {"email": "new@example.com", "role": "member"}),
        ("get", detail_url(membership), {}),
        ("patch", detail_url(membership), {"role": "admin"}),
        ("delete", detail_url(membership), {}),
        ("get", INVITATIONS, {}),
        ("delete", f"{INVITATIONS}/{invitation.pk}", {}),
    ]


@pytest.fixture
def someone(tenant):
    return MembershipFactory(tenant=tenant, role="member")


@pytest.fixture
def invitation(tenant):
    return invite_member(tenant=tenant, email="invited@example.com", role="member")[0]


def unchanged(membership, invitation) -> bool:
    membership.refresh_from_db()
    return membership.role == "member" and Invitation.objects.filter(pk=invitation.pk).exists()


def test_anonymous_callers_get_401(tenant, someone, invitation):
    for method, url, data in routes(someone, invitation):
        response = getattr(APIClient(), method)(url, data, format="json")
        assert response.status_code == 401, (method, url)
    assert unchanged(someone, invitation)


@pytest.mark.parametrize(
    "make_client",
    [
        pytest.param(lambda t: signed_in(t, "member"), id="member"),
        pytest.param(lambda t: signed_in(t, "viewer"), id="viewer"),
        pytest.param(lambda t: with_key(t, scopes=["usage:read"]), id="no-manage"),
        pytest.param(
            lambda t: with_key(t, end_user=EndUserFactory(tenant=t)), id="bound-manage-key"
        ),
    ],
)
def test_only_managers_and_unbound_manage_keys_may_call(tenant, someone, invitation, make_client):
    client = make_client(tenant)
    for method, url, data in routes(someone, invitation):
        response = getattr(client, method)(url, data, format="json")
        assert response.status_code == 403, (method, url)
    assert unchanged(someone, invitation)
    assert Invitation.objects.count() == 1


def test_another_tenants_member_and_invitation_are_not_found(tenant, other_tenant):
    theirs = MembershipFactory(tenant=other_tenant, role="member")
    their_invitation = invite_member(tenant=other_tenant, email="x@example.com", role="member")[0]
    client = signed_in(tenant, "owner")

    for method, url, data in routes(theirs, their_invitation)[2:5]:
        assert getattr(client, method)(url, data, format="json").status_code == 404, (method, url)
    assert client.delete(f"{INVITATIONS}/{their_invitation.pk}").status_code == 404
    assert unchanged(theirs, their_invitation)


def test_the_list_shows_this_tenants_members(tenant, other_tenant, django_assert_max_num_queries):
    client = signed_in(tenant, "admin")
    mine = [MembershipFactory(tenant=tenant, role=role) for role in ("owner", "member", "viewer")]
    MembershipFactory(tenant=other_tenant)
    client.get(URL)  # the first request stores the active tenant in the session

    with django_assert_max_num_queries(5):
        response = client.get(URL)

    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert ids == {m.pk for m in [*mine, client.membership]}
    row = next(r for r in response.json()["results"] if r["id"] == mine[0].pk)
    assert row == {
        "id": mine[0].pk,
        "username": mine[0].user.username,
        "email": mine[0].user.email,
        "role": "owner",
        "created_at": row["created_at"],
    }


def test_an_admin_invites_a_member(tenant, mailoutbox, django_capture_on_commit_callbacks):
    client = signed_in(tenant, "admin")

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            INVITE, {"email": "New@Example.com", "role": "viewer"}, format="json"
        )

    assert response.status_code == 201, response.content
    invitation = Invitation.objects.get()
    assert (invitation.email, invitation.role) == ("new@example.com", "viewer")
    assert response.json()["email"] == "new@example.com"
    assert AuditLog.objects.get().action == "member.invited"
    assert len(mailoutbox) == 1
    # The link's token is in the email only.
    token = mailoutbox[0].body.split("/invitations/")[1].split("/")[0].split()[0]
    assert len(token) > 20
    assert token not in response.content.decode()
    assert invitation.token_hash not in response.content.decode()
    listed = client.get(INVITATIONS).json()["results"]
    assert [row["id"] for row in listed] == [invitation.pk]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"email": "not-an-email"}, id="bad-email"),
        pytest.param({"email": "a@example.com", "role": "king"}, id="bad-role"),
        pytest.param({}, id="no-email"),
    ],
)
def test_invalid_invitations_are_a_400_and_nothing_is_saved(tenant, data, mailoutbox):
    client = signed_in(tenant, "owner")

    response = client.post(INVITE, data, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"detail"}
    assert not Invitation.objects.exists()
    assert mailoutbox == []


def test_inviting_an_existing_member_is_refused_by_the_service(tenant, someone):
    client = signed_in(tenant, "owner")

    response = client.post(INVITE, {"email": someone.user.email}, format="json")

    assert response.status_code == 400
    assert "already a member" in response.json()["detail"]
    assert not Invitation.objects.exists()


def test_only_owners_invite_owners(tenant):
    admin = signed_in(tenant, "admin")
    key = with_key(tenant)

    for client in (admin, key):
        response = client.post(
            INVITE, {"email": "boss@example.com", "role": "owner"}, format="json"
        )
        assert response.status_code == 403
    assert not Invitation.objects.exists()
    owner = signed_in(tenant, "owner")
    assert owner.post(INVITE, {"email": "boss@example.com", "role": "owner"}).status_code == 201


def test_an_admin_changes_a_members_role(tenant, someone):
    client = signed_in(tenant, "admin")

    response = client.patch(detail_url(someone), {"role": "admin"}, format="json")

    assert response.status_code == 200
    assert response.json()["role"] == "admin"
    someone.refresh_from_db()
    assert someone.role == Role.ADMIN
    entry = AuditLog.objects.get()
    assert (entry.action, entry.changes) == ("member.role_changed", {"role": ["member", "admin"]})


def test_only_owners_make_or_unmake_owners(tenant, someone):
    owner = MembershipFactory(tenant=tenant, role="owner")
    admin = signed_in(tenant, "admin")

    assert admin.patch(detail_url(someone), {"role": "owner"}, format="json").status_code == 403
    assert admin.patch(detail_url(owner), {"role": "member"}, format="json").status_code == 403
    assert admin.delete(detail_url(owner)).status_code == 403
    someone.refresh_from_db()
    owner.refresh_from_db()
    assert (someone.role, owner.role) == ("member", "owner")
    assert not AuditLog.objects.exists()


def test_the_last_owner_can_be_neither_demoted_nor_removed(tenant):
    client = signed_in(tenant, "owner")
    me = client.membership

    demoted = client.patch(detail_url(me), {"role": "admin"}, format="json")
    removed = client.delete(detail_url(me))

    assert demoted.status_code == 400
    assert "last owner" in demoted.json()["detail"]
    assert removed.status_code == 400
    assert "last owner" in removed.json()["detail"]
    me.refresh_from_db()
    assert me.role == Role.OWNER
    assert not AuditLog.objects.exists()


def test_an_invalid_role_is_a_400(tenant, someone):
    client = signed_in(tenant, "owner")

    response = client.patch(detail_url(someone), {"role": "king"}, format="json")

    assert response.status_code == 400
    someone.refresh_from_db()
    assert someone.role == "member"


def test_a_manager_removes_a_member(tenant, someone):
    client = with_key(tenant)

    response = client.delete(detail_url(someone))

    assert response.status_code == 204
    assert not Membership.objects.filter(pk=someone.pk).exists()
    assert AuditLog.objects.get().action == "member.removed"


def test_withdrawing_an_invitation(tenant, invitation):
    client = signed_in(tenant, "admin")

    response = client.delete(f"{INVITATIONS}/{invitation.pk}")

    assert response.status_code == 204
    assert not Invitation.objects.exists()
    assert AuditLog.objects.filter(action="member.invitation_revoked").exists()
