"""Credits, caps and alerts in the admin: grants via the service, caps audited, alerts read."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from tenants.models import AuditLog
from tests.factories import AlertFactory, CreditLedgerEntryFactory, SpendingCapFactory
from tests.tenants.admin_forms import changeform_data
from usage import services
from usage.models import Alert, CreditLedgerEntry

GRANT_URL = reverse("admin:usage_creditledgerentry_add")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_granting_credits_in_the_admin_writes_an_audited_ledger_entry(
    staff_client, staff_user, tenant
):
    response = staff_client.post(
        GRANT_URL,
        {"tenant": tenant.pk, "kind": "grant", "amount_usd": "25.5", "reason": "pilot"},
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    entry = CreditLedgerEntry.objects.get(tenant=tenant)
    assert (entry.kind, entry.amount_usd, entry.created_by) == (
        "grant",
        Decimal("25.5"),
        staff_user,
    )
    audit_entry = AuditLog.objects.get(action="credits.granted")
    assert (audit_entry.actor, audit_entry.tenant) == (staff_user, tenant)
    assert audit_entry.changes["amount_usd"] == "25.50000000"


@pytest.mark.parametrize("kind", ["usage", "platform_fee"])
def test_metering_kinds_cannot_be_added_by_hand(staff_client, tenant, kind):
    response = staff_client.post(
        GRANT_URL, {"tenant": tenant.pk, "kind": kind, "amount_usd": "-1", "reason": "x"}
    )

    assert response.status_code == 200
    assert "kind" in response.context["adminform"].form.errors
    assert not CreditLedgerEntry.objects.exists()


def test_only_an_adjustment_may_remove_credits(staff_client, tenant):
    refused = staff_client.post(
        GRANT_URL, {"tenant": tenant.pk, "kind": "grant", "amount_usd": "-5", "reason": "x"}
    )
    accepted = staff_client.post(
        GRANT_URL, {"tenant": tenant.pk, "kind": "adjustment", "amount_usd": "-5", "reason": "fix"}
    )

    assert refused.status_code == 200
    assert accepted.status_code == 302
    assert list(CreditLedgerEntry.objects.values_list("kind", "amount_usd")) == [
        ("adjustment", Decimal("-5"))
    ]


def test_grant_credits_refuses_what_the_form_refuses(tenant, staff_user):
    with pytest.raises(ValueError, match="metering"):
        services.grant_credits(
            tenant=tenant, amount_usd=Decimal(1), reason="", actor=staff_user, kind="usage"
        )
    with pytest.raises(ValueError, match="zero"):
        services.grant_credits(tenant=tenant, amount_usd=Decimal(0), reason="", actor=staff_user)


def test_ledger_entries_are_append_only(staff_client, tenant):
    entry = CreditLedgerEntryFactory(tenant=tenant)
    change = reverse("admin:usage_creditledgerentry_change", args=[entry.pk])
    delete = reverse("admin:usage_creditledgerentry_delete", args=[entry.pk])

    page = staff_client.get(change)
    staff_client.post(change, {"amount_usd": "999", "kind": "grant", "tenant": tenant.pk})

    assert page.status_code == 200  # a view-only page
    assert staff_client.get(delete).status_code == 403
    entry.refresh_from_db()
    assert entry.amount_usd == Decimal("25.00")


def test_the_ledger_list_shows_each_tenants_balance(staff_client, tenant, other_tenant):
    CreditLedgerEntryFactory(tenant=tenant, amount_usd=Decimal("10"))
    CreditLedgerEntryFactory(tenant=tenant, kind="usage", amount_usd=Decimal("-2.5"))
    CreditLedgerEntryFactory(tenant=other_tenant, amount_usd=Decimal("100"))

    html = staff_client.get(reverse("admin:usage_creditledgerentry_changelist")).content.decode()

    assert "7.5000" in html
    assert "100.0000" in html


def test_changing_a_spending_cap_is_audited(staff_client, staff_user, tenant):
    cap = SpendingCapFactory(tenant=tenant, amount_usd=Decimal("100.00"))
    url = reverse("admin:usage_spendingcap_change", args=[cap.pk])
    data = changeform_data(staff_client.get(url), amount_usd="250.00", mode="soft")

    response = staff_client.post(url, data)

    assert response.status_code == 302, response.content.decode()[:2000]
    entry = AuditLog.objects.get(action="spending_cap.updated")
    assert (entry.actor, entry.tenant) == (staff_user, tenant)
    assert entry.changes == {"amount_usd": ["100.00", "250.00"], "mode": ["hard", "soft"]}


def test_mark_read_action_marks_only_the_selected_alerts(staff_client, tenant):
    chosen, other = AlertFactory.create_batch(2, tenant=tenant)

    staff_client.post(
        reverse("admin:usage_alert_changelist"),
        {"action": "mark_read", "_selected_action": [chosen.pk]},
    )

    assert Alert.objects.get(pk=chosen.pk).read_at is not None
    assert Alert.objects.get(pk=other.pk).read_at is None
