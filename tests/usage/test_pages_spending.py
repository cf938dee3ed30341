"""The spending page: caps (tenant, each end user, single end users), where the period
stands against them, credits and the ledger, alerts; managers change caps, audited."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tenants import config_version
from tenants.models import AuditLog, EndUser
from tests.factories import (
    AlertFactory,
    CreditLedgerEntryFactory,
    EndUserFactory,
    MembershipFactory,
    SpendingCapFactory,
)
from usage.models import Alert, SpendingCap, UsageRecord

URL = reverse("usage:spending")
TENANT_CAP_URL = reverse("usage:tenant-cap")
EACH_USER_CAP_URL = reverse("usage:each-user-cap")
USER_CAP_ADD_URL = reverse("usage:user-cap-add")
ALERTS_READ_URL = reverse("usage:alerts-read")


def edit_url(cap) -> str:
    return reverse("usage:user-cap-edit", args=[cap.pk])


def toggle_url(cap) -> str:
    return reverse("usage:user-cap-set-enabled", args=[cap.pk])


def sign_in(client: Client, tenant, role: str):
    user = MembershipFactory(tenant=tenant, role=role).user
    client.force_login(user)
    return user


def cap_form(prefix: str, **fields) -> dict:
    data = {"amount_usd": "250", "mode": "soft", "alert_thresholds": "50, 90", "is_enabled": "on"}
    data.update(fields)
    return {f"{prefix}-{name}": value for name, value in data.items()}


def spend(tenant, amount: str, **fields) -> None:
    UsageRecord.objects.create(
        created_at=timezone.now(),
        tenant=tenant,
        request_id=uuid.uuid4(),
        outcome=1,
        cost_usd=Decimal(amount),
        **fields,
    )


def every_write(cap, alert) -> list[tuple[str, dict]]:
    return [
        (TENANT_CAP_URL, cap_form("tenant")),
        (EACH_USER_CAP_URL, cap_form("each")),
        (USER_CAP_ADD_URL, cap_form("user", end_user="customer-1")),
        (edit_url(cap), cap_form("cap")),
        (toggle_url(cap), {"enabled": "0"}),
        (ALERTS_READ_URL, {"alert": alert.pk}),
    ]


# --- who may see and do what --------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_login(client, tenant):
    cap = SpendingCapFactory(tenant=tenant, scope="user", end_user=EndUserFactory(tenant=tenant))
    alert = AlertFactory(tenant=tenant)

    for url in [URL, edit_url(cap)]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/?next="), url
    for url, data in every_write(cap, alert):
        response = client.post(url, data)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/?next="), url


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_change_caps(client, tenant, role):
    sign_in(client, tenant, role)
    cap = SpendingCapFactory(
        tenant=tenant, scope="user", end_user=EndUserFactory(tenant=tenant), amount_usd=5
    )
    alert = AlertFactory(tenant=tenant)
    writes = every_write(cap, alert)[:-1]  # marking alerts read has its own rule

    for url, data in writes:
        assert client.post(url, data).status_code == 403, url
    assert client.get(edit_url(cap)).status_code == 403
    cap.refresh_from_db()
    assert (cap.amount_usd, cap.is_enabled) == (Decimal(5), True)
    assert SpendingCap.objects.count() == 1
    assert not AuditLog.objects.filter(action__startswith="spending_cap").exists()


@pytest.mark.parametrize("role", ["owner", "admin", "member", "viewer"])
def test_every_role_sees_the_page(client, tenant, role):
    sign_in(client, tenant, role)
    assert client.get(URL).status_code == 200


def test_a_viewer_sees_caps_and_ledger_without_forms(client, tenant):
    sign_in(client, tenant, "viewer")
    SpendingCapFactory(tenant=tenant, amount_usd=Decimal(300))
    SpendingCapFactory(
        tenant=tenant,
        scope="user",
        end_user=EndUserFactory(tenant=tenant, external_id="customer-7"),
    )
    CreditLedgerEntryFactory(tenant=tenant, reason="welcome credits")

    content = client.get(URL).content.decode()

    assert "$300.00" in content
    assert "customer-7" in content
    assert "welcome credits" in content
    assert 'name="tenant-amount_usd"' not in content
    assert "Mark all as read" not in content


def test_another_tenants_caps_and_alerts_are_not_found(client, tenant, other_tenant):
    sign_in(client, tenant, "owner")
    theirs = SpendingCapFactory(
        tenant=other_tenant, scope="user", end_user=EndUserFactory(tenant=other_tenant)
    )
    their_alert = AlertFactory(tenant=other_tenant)
    CreditLedgerEntryFactory(tenant=other_tenant, reason="their secret grant")

    assert client.get(edit_url(theirs)).status_code == 404
    assert client.post(edit_url(theirs), cap_form("cap", amount_usd="1")).status_code == 404
    assert client.post(toggle_url(theirs), {"enabled": "0"}).status_code == 404
    assert client.post(ALERTS_READ_URL, {"alert": their_alert.pk}).status_code == 404
    assert client.post(ALERTS_READ_URL, {"all": "1"}).status_code == 302
    theirs.refresh_from_db()
    their_alert.refresh_from_db()
    assert (theirs.amount_usd, theirs.is_enabled) == (Decimal("100.00"), True)
    assert their_alert.read_at is None
    content = client.get(URL).content.decode()
    assert "their secret grant" not in content
    assert their_alert.message not in content


def test_csrf_is_enforced_on_every_post(tenant):
    client = Client(enforce_csrf_checks=True)
    sign_in(client, tenant, "owner")
    cap = SpendingCapFactory(tenant=tenant, scope="user", end_user=EndUserFactory(tenant=tenant))
    alert = AlertFactory(tenant=tenant)

    for url, data in every_write(cap, alert):
        assert client.post(url, data).status_code == 403, url
    alert.refresh_from_db()
    assert alert.read_at is None
    assert SpendingCap.objects.count() == 1


# --- caps -----------------------------------------------------------------------------------


def test_an_owner_sets_the_tenant_cap_audited_and_live(
    client, tenant, django_capture_on_commit_callbacks
):
    owner = sign_in(client, tenant, "owner")
    before = config_version.read_sync()

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(TENANT_CAP_URL, cap_form("tenant", amount_usd="120.50", mode="hard"))

    assert response.status_code == 302
    assert response["Location"] == f"{URL}#tenant-cap"
    cap = SpendingCap.objects.get(tenant=tenant, scope="tenant")
    assert (cap.amount_usd, cap.mode, cap.alert_thresholds) == (Decimal("120.50"), "hard", [50, 90])
    assert cap.is_enabled
    entry = AuditLog.objects.get(action="spending_cap.created")
    assert (entry.actor, entry.tenant) == (owner, tenant)
    assert config_version.read_sync() != before
    page = client.get(URL).content.decode()
    assert "The cap of Tenant A is saved" in page
    assert "$120.50" in page


def test_an_admin_changes_the_default_cap_of_each_end_user(client, tenant):
    sign_in(client, tenant, "admin")
    SpendingCapFactory(tenant=tenant, scope="each_user", amount_usd=Decimal(10))

    response = client.post(
        EACH_USER_CAP_URL, cap_form("each", amount_usd="15", alert_thresholds="80%, 100%")
    )

    assert response.status_code == 302
    cap = SpendingCap.objects.get(tenant=tenant, scope="each_user")
    assert (cap.amount_usd, cap.alert_thresholds) == (Decimal("15.00"), [80, 100])
    assert AuditLog.objects.filter(action="spending_cap.updated").count() == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"amount_usd": "-5"}, "A cap cannot be negative."),
        ({"amount_usd": "lots"}, "Enter the cap as a number of US dollars"),
        ({"amount_usd": ""}, "Enter the cap in US dollars"),
        ({"amount_usd": "1.234"}, "Cents at most"),
        ({"alert_thresholds": "50, 150"}, "150 % is outside 1-100"),
        ({"alert_thresholds": "half"}, "“half” is not a percent"),
        ({"alert_thresholds": "0"}, "0 % is outside 1-100"),
        ({"mode": "sometimes"}, "Soft or hard."),
    ],
)
def test_invalid_input_saves_nothing_and_says_why(client, tenant, fields, message):
    sign_in(client, tenant, "owner")

    response = client.post(TENANT_CAP_URL, cap_form("tenant", **fields))

    assert response.status_code == 400
    content = response.content.decode()
    assert message in content
    assert "Nothing was saved" in content
    assert not SpendingCap.objects.exists()
    assert not AuditLog.objects.exists()


def test_invalid_input_leaves_an_existing_cap_as_it_was(client, tenant):
    sign_in(client, tenant, "owner")
    cap = SpendingCapFactory(tenant=tenant, amount_usd=Decimal(40), alert_thresholds=[50])

    response = client.post(TENANT_CAP_URL, cap_form("tenant", alert_thresholds="50, 150"))

    assert response.status_code == 400
    cap.refresh_from_db()
    assert (cap.amount_usd, cap.alert_thresholds) == (Decimal(40), [50])


def test_an_end_users_cap_is_added_for_an_id_seen_or_new(client, tenant):
    sign_in(client, tenant, "owner")

    response = client.post(USER_CAP_ADD_URL, cap_form("user", end_user="customer-42"))

    assert response.status_code == 302
    cap = SpendingCap.objects.get(tenant=tenant, scope="user")
    assert cap.end_user.external_id == "customer-42"
    assert cap.end_user.tenant == tenant
    assert "customer-42" in client.get(URL).content.decode()


def test_an_invalid_end_user_cap_creates_no_end_user(client, tenant):
    sign_in(client, tenant, "owner")

    response = client.post(
        USER_CAP_ADD_URL, cap_form("user", end_user="customer-42", amount_usd="-1")
    )

    assert response.status_code == 400
    assert not EndUser.objects.filter(external_id="customer-42").exists()
    assert not SpendingCap.objects.exists()


def test_an_end_users_cap_is_edited_on_its_own_page(client, tenant):
    sign_in(client, tenant, "owner")
    user = EndUserFactory(tenant=tenant, external_id="customer-5")
    cap = SpendingCapFactory(tenant=tenant, scope="user", end_user=user, amount_usd=Decimal(5))

    page = client.get(edit_url(cap))
    response = client.post(edit_url(cap), cap_form("cap", amount_usd="7.25", mode="hard"))

    assert page.status_code == 200
    assert 'value="5.00"' in page.content.decode()
    assert response.status_code == 302
    cap.refresh_from_db()
    assert (cap.amount_usd, cap.mode, cap.end_user) == (Decimal("7.25"), "hard", user)
    bad = client.post(edit_url(cap), cap_form("cap", alert_thresholds="101"))
    assert bad.status_code == 400
    cap.refresh_from_db()
    assert cap.amount_usd == Decimal("7.25")


def test_an_end_users_cap_is_disabled_and_enabled_again(client, tenant):
    sign_in(client, tenant, "admin")
    cap = SpendingCapFactory(
        tenant=tenant, scope="user", end_user=EndUserFactory(tenant=tenant, external_id="c-1")
    )

    response = client.post(toggle_url(cap), {"enabled": "0"}, headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith(f'<tr id="user-cap-{cap.pk}"')
    assert "Enable" in response.content.decode()
    cap.refresh_from_db()
    assert not cap.is_enabled
    assert client.post(toggle_url(cap), {"enabled": "1"}).status_code == 302
    cap.refresh_from_db()
    assert cap.is_enabled
    assert AuditLog.objects.filter(action="spending_cap.updated").count() == 2


# --- where the period stands ----------------------------------------------------------------


def test_the_tenant_cap_shows_this_periods_spend_and_level(client, tenant):
    sign_in(client, tenant, "viewer")
    SpendingCapFactory(tenant=tenant, amount_usd=Decimal(10))
    spend(tenant, "9.00")

    response = client.get(URL)

    meter = response.context["tenant_meter"]
    assert (meter["percent"], meter["level"], meter["css"]) == ("90.0", "warning", "warn")
    content = response.content.decode()
    assert 'class="meter warn"' in content
    assert "$9.00 of $10.00" in content


def test_end_user_caps_show_each_end_users_spend(client, tenant):
    sign_in(client, tenant, "owner")
    big = EndUserFactory(tenant=tenant, external_id="big-spender")
    small = EndUserFactory(tenant=tenant, external_id="small-spender")
    SpendingCapFactory(tenant=tenant, scope="user", end_user=big, amount_usd=Decimal(2))
    SpendingCapFactory(tenant=tenant, scope="user", end_user=small, amount_usd=Decimal(100))
    spend(tenant, "2.50", end_user=big)
    spend(tenant, "1.00", end_user=small)

    rows = {
        row["cap"].end_user.external_id: row["meter"]
        for row in client.get(URL).context["user_cap_rows"]
    }

    assert rows["big-spender"]["percent"] == "100.0"
    assert rows["big-spender"]["level"] == "critical"
    assert rows["small-spender"]["level"] == "healthy"
    assert rows["small-spender"]["spent"] == "$1.00"


def test_a_member_sees_their_own_cap_but_not_other_end_users_or_the_ledger(client, tenant):
    member = sign_in(client, tenant, "member")
    mine = EndUserFactory(tenant=tenant, external_id="user:me", user=member)
    SpendingCapFactory(tenant=tenant, scope="each_user", amount_usd=Decimal(20))
    SpendingCapFactory(
        tenant=tenant,
        scope="user",
        end_user=EndUserFactory(tenant=tenant, external_id="customer-secret"),
    )
    CreditLedgerEntryFactory(tenant=tenant, reason="ledger secret")
    spend(tenant, "5.00", end_user=mine)

    response = client.get(URL)

    content = response.content.decode()
    assert response.context["my_meter"]["percent"] == "25.0"
    assert "$5.00 of $20.00" in content
    assert "customer-secret" not in content
    assert "ledger secret" not in content
    assert 'name="each-amount_usd"' not in content


# --- credits --------------------------------------------------------------------------------


def test_the_ledger_is_paginated_newest_first_and_the_balance_is_its_sum(client, tenant):
    sign_in(client, tenant, "owner")
    for n in range(25):
        CreditLedgerEntryFactory(tenant=tenant, amount_usd=Decimal(1), reason=f"grant {n:02d}")
    CreditLedgerEntryFactory(tenant=tenant, kind="usage", amount_usd=Decimal("-3.5"), reason="x")

    first = client.get(URL)
    second = client.get(URL, {"ledger": 2})

    assert first.context["balance"] == Decimal("21.5")
    assert "$21.50" in first.content.decode()
    first_reasons = [e.reason for e in first.context["ledger_page"].object_list]
    second_reasons = [e.reason for e in second.context["ledger_page"].object_list]
    assert first_reasons[:2] == ["x", "grant 24"]
    assert len(first_reasons) == 20
    assert second_reasons[-1] == "grant 00"
    assert len(first_reasons) + len(second_reasons) == 26


# --- alerts ---------------------------------------------------------------------------------


def test_a_member_sees_alerts_about_the_tenant_and_themselves_only(client, tenant):
    member = sign_in(client, tenant, "member")
    mine = EndUserFactory(tenant=tenant, user=member)
    AlertFactory(tenant=tenant, message="tenant-wide alert")
    AlertFactory(tenant=tenant, end_user=mine, message="alert about me")
    AlertFactory(tenant=tenant, end_user=EndUserFactory(tenant=tenant), message="about another")

    content = client.get(URL).content.decode()

    assert "tenant-wide alert" in content
    assert "alert about me" in content
    assert "about another" not in content


def test_alerts_are_marked_read_one_or_all(client, tenant):
    sign_in(client, tenant, "admin")
    first, *_ = (AlertFactory(tenant=tenant) for _ in range(3))

    one = client.post(ALERTS_READ_URL, {"alert": first.pk})

    assert one.status_code == 302
    assert one["Location"] == f"{URL}#alerts"
    assert Alert.objects.filter(read_at__isnull=True).count() == 2
    client.post(ALERTS_READ_URL, {"all": "1"})
    assert not Alert.objects.filter(read_at__isnull=True).exists()
    assert "2 alerts marked as read." in client.get(URL).content.decode()


def test_a_member_marks_only_alerts_about_themselves(client, tenant):
    member = sign_in(client, tenant, "member")
    mine = EndUserFactory(tenant=tenant, user=member)
    about_me = AlertFactory(tenant=tenant, end_user=mine)
    tenant_wide = AlertFactory(tenant=tenant)

    assert client.post(ALERTS_READ_URL, {"alert": tenant_wide.pk}).status_code == 404
    assert client.post(ALERTS_READ_URL, {"all": "1"}).status_code == 302
    about_me.refresh_from_db()
    tenant_wide.refresh_from_db()
    assert about_me.read_at is not None
    assert tenant_wide.read_at is None


def test_a_viewer_cannot_mark_alerts_read(client, tenant):
    sign_in(client, tenant, "viewer")
    alert = AlertFactory(tenant=tenant)

    assert client.post(ALERTS_READ_URL, {"alert": alert.pk}).status_code == 403
    alert.refresh_from_db()
    assert alert.read_at is None


def test_alert_messages_are_escaped(client, tenant):
    sign_in(client, tenant, "owner")
    AlertFactory(tenant=tenant, message="<script>alert(1)</script> 80 % reached")

    content = client.get(URL).content.decode()

    assert "<script>alert(1)</script>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 80 % reached" in content


@pytest.mark.parametrize("role", ["owner", "member"])
def test_the_page_costs_a_fixed_number_of_queries(
    client, tenant, role, django_assert_max_num_queries
):
    user = sign_in(client, tenant, role)
    EndUserFactory(tenant=tenant, user=user)
    SpendingCapFactory(tenant=tenant)
    SpendingCapFactory(tenant=tenant, scope="each_user")
    for n in range(30):
        end_user = EndUserFactory(tenant=tenant)
        SpendingCapFactory(tenant=tenant, scope="user", end_user=end_user)
        CreditLedgerEntryFactory(tenant=tenant)
        AlertFactory(tenant=tenant, end_user=end_user if n % 2 else None)
        spend(tenant, "0.10", end_user=end_user)
    client.get(URL)  # warm the session

    # No spend counters in Redis here: each spend is the rollup state, then one UNION query.
    with django_assert_max_num_queries(18):
        response = client.get(URL)

    assert response.status_code == 200
