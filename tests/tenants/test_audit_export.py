"""The tenant's audit log out of Switchyard: GET /api/v1/audit-log (pages, filters, CSV), the
audit page, and the export_audit_log command."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from tenants.audit_export import STAFF_LABEL
from tenants.models import AuditLog
from tests.factories import AuditLogFactory
from tests.tenants.audit_helpers import api_key_client, api_session, member_browser, recorded

URL = "/api/v1/audit-log"


def csv_rows(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def aged(entry: AuditLog, days: int) -> AuditLog:
    AuditLog.objects.filter(pk=entry.pk).update(created_at=timezone.now() - timedelta(days=days))
    entry.refresh_from_db()
    return entry


# --- the API ---------------------------------------------------------------------------


def test_an_owner_pages_through_the_tenants_entries_newest_first(tenant, owner):
    entries = [AuditLogFactory(tenant=tenant, action=f"member.step{i}") for i in range(3)]

    first = api_session(owner).get(URL, {"limit": 2})
    second = api_session(owner).get(URL, {"limit": 2, "offset": 2})

    assert first.status_code == 200
    body = first.json()
    assert body["count"] == 3
    ids = [r["id"] for r in body["results"]] + [r["id"] for r in second.json()["results"]]
    assert ids == [e.pk for e in reversed(entries)]
    assert set(body["results"][0]) == {
        "id",
        "created_at",
        "actor",
        "action",
        "target_type",
        "target_id",
        "target",
        "changes",
        "ip_address",
        "user_agent",
    }


def test_the_api_filters_by_action_prefix_actor_and_time(tenant, owner):
    keep = AuditLogFactory(tenant=tenant, action="provider_key.added", actor_label="alice")
    AuditLogFactory(tenant=tenant, action="provider_key.added", actor_label="bob")
    AuditLogFactory(tenant=tenant, action="api_key.created", actor_label="alice")
    aged(AuditLogFactory(tenant=tenant, action="provider_key.deleted", actor_label="alice"), 10)
    since = (timezone.now() - timedelta(days=1)).date().isoformat()

    response = api_session(owner).get(
        URL, {"action": "provider_key.", "actor": "alice", "since": since}
    )

    assert [r["id"] for r in response.json()["results"]] == [keep.pk]


def test_a_bad_filter_is_a_400_naming_it(tenant, owner):
    response = api_session(owner).get(URL, {"since": "yesterday-ish"})

    assert response.status_code == 400
    assert response.json()["detail"].startswith("since:")


def test_format_csv_streams_every_matching_entry_and_records_the_export(tenant, owner):
    AuditLogFactory(tenant=tenant, action="member.invited", changes={"email": "x@example.com"})
    AuditLogFactory(tenant=tenant, action="api_key.created")

    response = api_session(owner).get(URL, {"format": "csv", "action": "member."})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-log-tenant-a-')
    rows = csv_rows(response)
    assert [r["action"] for r in rows] == ["member.invited"]
    assert json.loads(rows[0]["changes"]) == {"email": "x@example.com"}
    export = recorded("audit_log.exported", tenant=tenant, actor=owner)
    assert export.changes == {"format": "csv", "filters": {"action": "member."}}


def test_a_manage_key_reads_the_log(tenant):
    AuditLogFactory(tenant=tenant)
    client, _ = api_key_client(tenant, scopes=("manage",))

    assert client.get(URL).json()["count"] == 1


def test_staff_changes_reach_the_tenant_unnamed_and_without_their_address(
    tenant, owner, staff_user
):
    AuditLogFactory(
        tenant=tenant, actor=staff_user, actor_label=staff_user.username, ip_address="10.9.8.7"
    )

    row = api_session(owner).get(URL).json()["results"][0]

    assert (row["actor"], row["ip_address"], row["user_agent"]) == (STAFF_LABEL, None, "")


# --- the page --------------------------------------------------------------------------


def test_the_audit_page_lists_the_tenants_entries_and_links_the_csv(tenant):
    client, _ = member_browser(tenant, "admin")
    AuditLogFactory(tenant=tenant, action="member.invited", actor_label="carol")
    AuditLogFactory(tenant=tenant, action="api_key.created", actor_label="dave")

    response = client.get(reverse("tenants:audit-log"), {"action": "member."})

    page = response.content.decode()
    assert response.status_code == 200
    assert "member.invited" in page
    assert "api_key.created" not in page
    assert "/api/v1/audit-log?action=member.&amp;format=csv" in page
    assert 'href="/audit-log/"' in page  # in the navigation


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_the_audit_page_is_for_owners_and_admins_only(tenant, role):
    client, _ = member_browser(tenant, role)

    assert client.get(reverse("tenants:audit-log")).status_code == 403
    assert 'href="/audit-log/"' not in client.get(reverse("usage:spending")).content.decode()


def test_the_audit_page_pages_fifty_at_a_time(tenant, django_assert_max_num_queries):
    client, _ = member_browser(tenant, "owner")
    AuditLog.objects.bulk_create(
        [AuditLog(tenant=tenant, action=f"member.bulk{i}", actor_label="x") for i in range(60)]
    )

    with django_assert_max_num_queries(15):
        first = client.get(reverse("tenants:audit-log"))
    second = client.get(reverse("tenants:audit-log"), {"page": 2})

    assert first.content.decode().count('id="audit-') == 50
    assert second.content.decode().count('id="audit-') == 10


# --- the command ---------------------------------------------------------------------------


def test_the_command_exports_one_tenant_since_a_date_oldest_first(tenant, other_tenant):
    aged(AuditLogFactory(tenant=tenant, action="tenant.ancient"), 30)
    older = aged(AuditLogFactory(tenant=tenant, action="tenant.older"), 3)
    newer = AuditLogFactory(tenant=tenant, action="tenant.newer")
    AuditLogFactory(tenant=other_tenant, action="tenant.theirs")
    out = io.StringIO()
    since = (timezone.now() - timedelta(days=7)).date().isoformat()

    call_command("export_audit_log", "--tenant", "tenant-a", "--since", since, stdout=out)

    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["id"] for r in rows] == [str(older.pk), str(newer.pk)]
    entry = recorded(
        "audit_log.exported", tenant=tenant, actor_label="command:export_audit_log", ip=None
    )
    assert entry.changes["filters"]["tenant"] == "tenant-a"


def test_the_command_writes_json_lines(tenant, tmp_path):
    AuditLogFactory(tenant=tenant, action="member.invited", ip_address="198.51.100.9")
    target = tmp_path / "audit.jsonl"

    call_command(
        "export_audit_log", "--format", "jsonl", "--output", str(target), stderr=io.StringIO()
    )

    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(line["action"], line["tenant"], line["ip_address"]) for line in lines] == [
        ("member.invited", "tenant-a", "198.51.100.9")
    ]


def test_the_command_refuses_an_unknown_tenant_and_a_bad_date(db):
    with pytest.raises(CommandError, match="No tenant"):
        call_command("export_audit_log", "--tenant", "nope")
    with pytest.raises(CommandError, match="--since"):
        call_command("export_audit_log", "--since", "last tuesday")
