"""The audit log in the admin: read-only for everyone (superusers too), filtered, searched,
exported as CSV; and staff's changes in the admins Switchyard did not write are audited."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from tenants.models import AuditLog
from tests.factories import AuditLogFactory, UserFactory
from tests.tenants.admin_forms import changeform_data
from tests.tenants.audit_helpers import CLIENT_IP, browser, recorded

LIST_URL = reverse("admin:tenants_auditlog_changelist")
EXPORT_URL = reverse("admin:tenants_auditlog_export")


@pytest.fixture
def staff(staff_user):
    return browser(staff_user)


def csv_rows(response) -> list[dict[str, str]]:
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


# --- read-only ---------------------------------------------------------------------------


def test_not_even_a_superuser_can_add_change_or_delete_an_entry(staff, tenant):
    entry = AuditLogFactory(tenant=tenant, action="tenant.updated", actor_label="someone")

    add = staff.post(reverse("admin:tenants_auditlog_add"), {"action": "forged.entry"})
    change = staff.post(
        reverse("admin:tenants_auditlog_change", args=[entry.pk]),
        {"action": "forged.entry", "actor_label": "nobody"},
    )
    delete = staff.post(reverse("admin:tenants_auditlog_delete", args=[entry.pk]), {"post": "yes"})

    assert (add.status_code, change.status_code, delete.status_code) == (403, 403, 403)
    entry.refresh_from_db()
    assert (entry.action, entry.actor_label) == ("tenant.updated", "someone")
    assert not AuditLog.objects.filter(action="forged.entry").exists()


def test_the_changelist_offers_no_bulk_delete(staff, tenant):
    entry = AuditLogFactory(tenant=tenant)

    page = staff.get(LIST_URL)
    staff.post(LIST_URL, {"action": "delete_selected", "_selected_action": [entry.pk], "post": "1"})

    assert "delete_selected" not in page.content.decode()
    assert AuditLog.objects.filter(pk=entry.pk).exists()


def test_an_entry_shows_read_only_with_where_it_came_from(staff, tenant):
    entry = AuditLogFactory(tenant=tenant, ip_address="198.51.100.4", user_agent="curl/8.5")

    page = staff.get(reverse("admin:tenants_auditlog_change", args=[entry.pk])).content.decode()

    assert "198.51.100.4" in page
    assert "curl/8.5" in page
    assert 'name="action"' not in page  # no input: nothing to submit


# --- filters and search ------------------------------------------------------------------


def test_the_changelist_filters_by_tenant_action_actor_and_date(
    staff, staff_user, tenant, other_tenant, django_assert_max_num_queries
):
    mine = AuditLogFactory(tenant=tenant, action="api_key.created", actor=staff_user)
    AuditLogFactory(tenant=other_tenant, action="api_key.created")
    AuditLogFactory(tenant=tenant, action="member.invited")
    old = AuditLogFactory(tenant=tenant, action="api_key.created")
    AuditLog.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))

    with django_assert_max_num_queries(20):
        response = staff.get(
            LIST_URL,
            {
                "tenant__id__exact": tenant.pk,
                "action__exact": "api_key.created",
                "actor_kind": "staff",
                "created_at__gte": (timezone.now() - timedelta(days=7)).date().isoformat(),
            },
        )

    assert response.status_code == 200
    assert [e.pk for e in response.context["cl"].result_list] == [mine.pk]


def test_the_changelist_searches_by_address(staff, tenant):
    AuditLogFactory(tenant=tenant, ip_address="198.51.100.77")
    AuditLogFactory(tenant=tenant, ip_address="198.51.100.78")

    response = staff.get(LIST_URL, {"q": "198.51.100.77"})

    assert [e.ip_address for e in response.context["cl"].result_list] == ["198.51.100.77"]


# --- export --------------------------------------------------------------------------------


def test_the_export_button_streams_what_the_filters_show_and_is_itself_audited(
    staff, staff_user, tenant, other_tenant
):
    wanted = AuditLogFactory(tenant=tenant, action="member.invited", actor_label="alice")
    AuditLogFactory(tenant=other_tenant, action="member.invited")
    AuditLogFactory(tenant=tenant, action="api_key.created")

    page = staff.get(LIST_URL, {"tenant__id__exact": tenant.pk, "action__exact": "member.invited"})
    assert EXPORT_URL in page.content.decode()
    response = staff.get(
        EXPORT_URL, {"tenant__id__exact": tenant.pk, "action__exact": "member.invited"}
    )

    rows = csv_rows(response)
    assert [(r["id"], r["tenant"], r["actor"], r["action"]) for r in rows] == [
        (str(wanted.pk), "tenant-a", "alice", "member.invited")
    ]
    entry = recorded("audit_log.exported", tenant=None, actor=staff_user)
    assert entry.changes["filters"]["action__exact"] == "member.invited"


def test_the_export_action_streams_the_selected_entries(staff, tenant):
    chosen = AuditLogFactory(tenant=tenant, action="tenant.updated")
    AuditLogFactory(tenant=tenant, action="tenant.updated")

    response = staff.post(LIST_URL, {"action": "export_csv", "_selected_action": [chosen.pk]})

    assert [r["id"] for r in csv_rows(response)] == [str(chosen.pk)]


def test_an_unknown_filter_in_the_export_is_refused_not_ignored(staff, tenant):
    response = staff.get(EXPORT_URL, {"actor__password__startswith": "pbkdf2"})

    assert response.status_code == 400
    assert not AuditLog.objects.filter(action="audit_log.exported").exists()


# --- staff changes in the admins we did not write ------------------------------------------


def test_making_someone_a_superuser_in_the_user_admin_is_recorded(staff, staff_user):
    someone = UserFactory(username="promoted")
    url = reverse("admin:auth_user_change", args=[someone.pk])

    data = changeform_data(staff.get(url), is_staff="on", is_superuser="on")
    # The join date is a split date/time widget the helper sends as one value.
    joined = timezone.localtime(someone.date_joined)
    data.update(date_joined_0=f"{joined:%Y-%m-%d}", date_joined_1=f"{joined:%H:%M:%S}")
    data.pop("date_joined", None)
    data.pop("last_login", None)
    response = staff.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    entry = recorded("user.updated", tenant=None, actor=staff_user)
    assert entry.target_id == str(someone.pk)
    assert entry.changes["is_superuser"] == [False, True]
    assert "password" not in entry.changes


def test_a_password_set_in_the_admin_is_recorded_without_it(staff, staff_user):
    someone = UserFactory(username="reset-me")
    url = reverse("admin:auth_user_password_change", args=[someone.pk])

    response = staff.post(
        url,
        {
            "password1": "Brand-new-pass-9",
            "password2": "Brand-new-pass-9",
            "usable_password": "true",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    entry = recorded("user.password_changed", tenant=None, actor=staff_user)
    assert entry.changes == {}
    someone.refresh_from_db()
    assert someone.password not in str(AuditLog.objects.values_list("changes", "target_repr"))


def test_a_beat_schedule_action_in_the_admin_is_recorded(staff, staff_user, db):
    every_day = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.DAYS)
    task = PeriodicTask.objects.create(
        name="validate keys", task="providers.validate_active_keys", interval=every_day
    )

    staff.post(
        reverse("admin:django_celery_beat_periodictask_changelist"),
        {"action": "disable_tasks", "_selected_action": [task.pk]},
    )

    task.refresh_from_db()
    assert not task.enabled
    entry = recorded("admin.action_run", tenant=None, actor=staff_user)
    assert entry.changes["action"] == "disable_tasks"
    assert entry.changes["model"] == "django_celery_beat.periodictask"
    assert entry.ip_address == CLIENT_IP
