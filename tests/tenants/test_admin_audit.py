"""Staff edits to tenants and plans in the admin are audited and bump the config version."""

from __future__ import annotations

import pytest
from django.urls import reverse

from tenants import config_version
from tenants.models import AuditLog, Membership, Plan
from tests.factories import MembershipFactory, UserFactory, plan
from tests.tenants.admin_forms import changeform_data


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def tenant_url(tenant) -> str:
    return reverse("admin:tenants_tenant_change", args=[tenant.pk])


def test_changing_a_tenants_plan_is_audited_with_actor_and_change(
    staff_client, staff_user, tenant, django_capture_on_commit_callbacks
):
    assert tenant.plan.slug == "professional"
    enterprise = plan("enterprise")
    data = changeform_data(staff_client.get(tenant_url(tenant)), plan=enterprise.pk)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(tenant_url(tenant), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    tenant.refresh_from_db()
    assert tenant.plan == enterprise
    entry = AuditLog.objects.get(action="tenant.updated")
    assert (entry.actor, entry.tenant, entry.target_id) == (staff_user, tenant, str(tenant.pk))
    assert entry.changes == {"plan": ["Professional", "Enterprise"]}
    assert config_version.read_sync() != "0"


def test_saving_a_tenant_unchanged_writes_no_audit_entry(staff_client, tenant):
    data = changeform_data(staff_client.get(tenant_url(tenant)))

    staff_client.post(tenant_url(tenant), data)

    assert not AuditLog.objects.filter(action="tenant.updated").exists()


def test_a_member_added_inline_is_audited(staff_client, staff_user, tenant):
    newcomer = UserFactory()
    data = changeform_data(
        staff_client.get(tenant_url(tenant)),
        **{
            "memberships-TOTAL_FORMS": "1",
            "memberships-0-user": str(newcomer.pk),
            "memberships-0-role": "admin",
            "memberships-0-tenant": str(tenant.pk),
        },
    )

    response = staff_client.post(tenant_url(tenant), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    assert Membership.objects.get(tenant=tenant, user=newcomer).role == "admin"
    entry = AuditLog.objects.get(action="member.created")
    assert (entry.actor, entry.tenant) == (staff_user, tenant)
    assert entry.changes["role"] == [None, "admin"]


def test_a_member_removed_inline_is_audited(staff_client, tenant):
    membership = MembershipFactory(tenant=tenant, role="viewer")
    page = staff_client.get(tenant_url(tenant))
    data = changeform_data(page, **{"memberships-0-DELETE": "on"})

    staff_client.post(tenant_url(tenant), data)

    assert not Membership.objects.filter(pk=membership.pk).exists()
    entry = AuditLog.objects.get(action="member.deleted")
    assert entry.target_id == str(membership.pk)


def test_suspending_tenants_goes_through_the_service(staff_client, staff_user, tenant):
    url = reverse("admin:tenants_tenant_changelist")

    staff_client.post(url, {"action": "suspend", "_selected_action": [tenant.pk]})

    tenant.refresh_from_db()
    assert not tenant.is_active
    entry = AuditLog.objects.get(action="tenant.updated")
    assert entry.actor == staff_user
    assert entry.changes == {"is_active": ["True", "False"]}


def test_changing_a_plans_limits_is_audited(staff_client, staff_user, db):
    trial = Plan.objects.get(slug="trial")
    url = reverse("admin:tenants_plan_change", args=[trial.pk])
    data = changeform_data(staff_client.get(url), requests_per_minute="12")

    staff_client.post(url, data)

    entry = AuditLog.objects.get(action="plan.updated")
    assert entry.actor == staff_user
    assert entry.tenant is None
    assert entry.changes == {"requests_per_minute": [10, 12]}


def test_deleting_a_tenant_keeps_its_audit_entry(staff_client, staff_user, tenant):
    url = reverse("admin:tenants_tenant_delete", args=[tenant.pk])

    response = staff_client.post(url, {"post": "yes"})

    assert response.status_code == 302
    entry = AuditLog.objects.get(action="tenant.deleted")
    assert (entry.actor, entry.target_id, entry.target_repr) == (
        staff_user,
        str(tenant.pk),
        "Tenant A",
    )
