"""GET /api/v1/limits and `limit_status`: GCRA state read back as used / remaining / reset."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.services import end_user_for_login
from tests.factories import (
    CreditLedgerEntryFactory,
    EndUserFactory,
    SpendingCapFactory,
    TenantAPIKeyFactory,
    TenantFactory,
    UsageRecordFactory,
    plan,
)
from usage import counters, selectors
from usage.limiter import to_units

URL = "/api/v1/limits"
NOW = datetime(2025, 3, 20, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp()) * 1000
MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def frozen(monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: NOW)


@pytest.fixture
def store():
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def client_for_key(key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")
    return client


def by_name(entries: list[dict]) -> dict[str, dict]:
    return {entry["name"]: entry for entry in entries}


def used_up(store, tenant, name: str, tat_ms) -> None:
    """Set a limit's theoretical arrival time, as the gateway's script stores it."""
    limit = {r[0]: getattr(tenant.plan, r[1]) for r in selectors.PLAN_RATE_LIMITS}[name]
    store.set(counters.rate_limit_key(tenant.pk, name, limit), str(tat_ms))


# --- levels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("percent", "level"),
    [
        (0, "healthy"),
        (49, "healthy"),
        (50, "normal"),
        (79, "normal"),
        (80, "warning"),
        (94, "warning"),
        (95, "critical"),
        (100, "critical"),
    ],
)
def test_levels_follow_the_share_of_the_period_used_up(tenant, store, percent, level):
    # Professional: 100 requests a minute, so each request moves the TAT on by 600 ms.
    used_up(store, tenant, "requests-minute", NOW_MS + percent * 600)

    entry = by_name(selectors.limit_status(tenant=tenant, now=NOW))["requests-minute"]

    assert (entry["used"], entry["remaining"], entry["level"]) == (percent, 100 - percent, level)
    assert entry["reset_seconds"] == -(-percent * 600 // 1000)


@pytest.mark.parametrize(
    ("used", "limit", "level"),
    [
        (49, 100, "healthy"),
        (50, 100, "normal"),
        (79, 100, "normal"),
        (80, 100, "warning"),
        (94, 100, "warning"),
        (95, 100, "critical"),
        (Decimal("47.49"), Decimal("95"), "healthy"),
        (Decimal("47.50"), Decimal("95"), "normal"),
        (0, 0, "critical"),
    ],
)
def test_usage_level_thresholds_are_exact(used, limit, level):
    assert selectors.usage_level(used, limit) == level


# --- rate limits ------------------------------------------------------------------------------


def test_untouched_limits_have_nothing_used(tenant):
    entries = by_name(selectors.limit_status(tenant=tenant, now=NOW))

    assert {
        name: (e["limit"], e["used"], e["remaining"], e["reset_seconds"], e["level"])
        for name, e in entries.items()
        if e["kind"] == "rate"
    } == {
        "requests-minute": (100, 0, 100, 0, "healthy"),
        "requests-hour": (5000, 0, 5000, 0, "healthy"),
        "requests-day": (50000, 0, 50000, 0, "healthy"),
        "tokens-minute": (500000, 0, 500000, 0, "healthy"),
    }


def test_a_fractional_tat_and_an_expired_one(tenant, store):
    used_up(store, tenant, "requests-minute", f"{NOW_MS + 18000.5}")  # 30.0008 requests ahead
    used_up(store, tenant, "requests-hour", NOW_MS - 5)  # in the past: nothing used

    entries = by_name(selectors.limit_status(tenant=tenant, now=NOW))

    minute, hour = entries["requests-minute"], entries["requests-hour"]
    assert (minute["used"], minute["remaining"], minute["reset_seconds"]) == (31, 69, 19)
    assert (hour["used"], hour["remaining"], hour["reset_seconds"]) == (0, 5000, 0)


def test_the_api_reports_each_limit_from_the_live_counters(tenant, store, frozen):
    key = TenantAPIKeyFactory(tenant=tenant)
    used_up(store, tenant, "requests-minute", NOW_MS + 30 * 600)  # 30 of 100
    used_up(store, tenant, "requests-hour", NOW_MS + 4750 * 720)  # 4750 of 5000: 95 %
    used_up(store, tenant, "tokens-minute", NOW_MS + MINUTE // 2)  # half of 500k tokens

    response = client_for_key(key).get(URL)

    assert response.status_code == 200
    entries = by_name(response.json()["limits"])
    assert entries["requests-minute"] == {
        "kind": "rate",
        "name": "requests-minute",
        "unit": "requests",
        "period_seconds": 60,
        "limit": 100,
        "used": 30,
        "remaining": 70,
        "reset_seconds": 18,
        "level": "healthy",
        "unavailable": False,
    }
    hour = entries["requests-hour"]
    assert (hour["used"], hour["remaining"], hour["reset_seconds"], hour["level"]) == (
        4750,
        250,
        3420,
        "critical",
    )
    tokens = entries["tokens-minute"]
    assert (tokens["unit"], tokens["used"], tokens["remaining"], tokens["level"]) == (
        "tokens",
        250_000,
        250_000,
        "normal",
    )
    assert entries["requests-day"]["used"] == 0


def test_a_key_with_its_own_limit_sees_it(tenant, store, frozen):
    key = TenantAPIKeyFactory(tenant=tenant, requests_per_minute=10)
    store.set(
        counters.api_key_rate_limit_key(key.pk, key.requests_per_minute), NOW_MS + 8 * 6000
    )  # 8 of 10

    entry = by_name(client_for_key(key).get(URL).json()["limits"])["key-requests-minute"]

    assert (entry["limit"], entry["used"], entry["remaining"], entry["level"]) == (
        10,
        8,
        2,
        "warning",
    )


def test_unlimited_plan_limits_are_not_listed_and_invoiced_plans_show_no_credits(db):
    enterprise = TenantFactory(slug="big-co", plan=plan("enterprise"))

    names = {e["name"] for e in selectors.limit_status(tenant=enterprise, now=NOW)}

    assert names == {"requests-minute", "requests-hour", "tokens-minute"}


def test_unreachable_redis_marks_rate_limits_unavailable(tenant, monkeypatch, frozen):
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    monkeypatch.setattr(counters, "sync_client", lambda: dead)
    SpendingCapFactory(tenant=tenant, amount_usd=Decimal("10"))
    UsageRecordFactory(tenant=tenant, created_at=NOW, cost_usd=Decimal("6"))
    key = TenantAPIKeyFactory(tenant=tenant)

    response = client_for_key(key).get(URL)

    assert response.status_code == 200
    entries = by_name(response.json()["limits"])
    assert entries["requests-minute"]["unavailable"] is True
    assert entries["requests-minute"]["remaining"] is None
    assert entries["spending-cap-tenant"]["spent_usd"] == "6.00000000"


# --- spending caps and credits --------------------------------------------------------------


def test_the_tenant_cap_reads_the_live_spent_counter(tenant, store, frozen):
    SpendingCapFactory(tenant=tenant, amount_usd=Decimal("100"), mode="soft")
    spent_key, _ = counters.budget_keys("t", str(tenant.pk), NOW.date().replace(day=1))
    store.set(spent_key, to_units(Decimal("80.5")))
    UsageRecordFactory(tenant=tenant, created_at=NOW, cost_usd=Decimal("1"))  # not yet counted
    key = TenantAPIKeyFactory(tenant=tenant)

    cap = by_name(client_for_key(key).get(URL).json()["limits"])["spending-cap-tenant"]

    assert cap == {
        "kind": "spending_cap",
        "name": "spending-cap-tenant",
        "mode": "soft",
        "cap_usd": "100.00000000",
        "spent_usd": "80.50000000",
        "remaining_usd": "19.50000000",
        "period_start": "2025-03-01",
        "period_end": "2025-04-01",
        "reset_seconds": 12 * 86400 - 12 * 3600,
        "level": "warning",
    }


def test_without_a_counter_the_cap_is_read_from_recorded_usage(tenant, frozen):
    SpendingCapFactory(tenant=tenant, amount_usd=Decimal("50"))
    UsageRecordFactory(tenant=tenant, created_at=NOW, cost_usd=Decimal("12.5"))
    UsageRecordFactory(
        tenant=tenant, created_at=datetime(2025, 2, 28, tzinfo=UTC), cost_usd=Decimal("99")
    )  # last period

    cap = by_name(selectors.limit_status(tenant=tenant, now=NOW))["spending-cap-tenant"]

    assert (cap["spent_usd"], cap["level"]) == (Decimal("12.5"), "healthy")


def test_a_member_sees_the_tenant_cap_and_their_own(tenant, member, store, frozen):
    profile = end_user_for_login(tenant=tenant, user=member)
    SpendingCapFactory(tenant=tenant, amount_usd=Decimal("100"))
    SpendingCapFactory(tenant=tenant, scope="each_user", amount_usd=Decimal("5"))
    SpendingCapFactory(tenant=tenant, scope="user", end_user=profile, amount_usd=Decimal("2"))
    UsageRecordFactory(tenant=tenant, created_at=NOW, end_user=profile, cost_usd=Decimal("1.9"))
    UsageRecordFactory(tenant=tenant, created_at=NOW, cost_usd=Decimal("3"))
    client = APIClient()
    client.force_login(member)

    entries = by_name(client.get(URL).json()["limits"])

    own = entries["spending-cap-end-user"]
    assert (own["cap_usd"], own["spent_usd"], own["level"]) == (
        "2.00000000",
        "1.90000000",
        "critical",
    )
    assert entries["spending-cap-tenant"]["spent_usd"] == "4.90000000"


def test_an_end_user_key_gets_the_each_user_cap_from_its_counter(tenant, store, frozen):
    bob = EndUserFactory(tenant=tenant, external_id="bob")
    SpendingCapFactory(tenant=tenant, scope="each_user", amount_usd=Decimal("5"))
    spent_key, _ = counters.budget_keys("u", f"{tenant.pk}:bob", NOW.date().replace(day=1))
    store.set(spent_key, to_units(Decimal("2.5")))
    key = TenantAPIKeyFactory(tenant=tenant, end_user=bob)

    entries = by_name(client_for_key(key).get(URL).json()["limits"])

    assert "spending-cap-tenant" not in entries
    own = entries["spending-cap-end-user"]
    assert (own["spent_usd"], own["level"]) == ("2.50000000", "normal")


def test_an_owner_sees_only_the_tenant_cap(tenant, owner, frozen):
    SpendingCapFactory(tenant=tenant, amount_usd=Decimal("100"))
    SpendingCapFactory(tenant=tenant, scope="each_user", amount_usd=Decimal("5"))
    client = APIClient()
    client.force_login(owner)

    names = {e["name"] for e in client.get(URL).json()["limits"]}

    assert "spending-cap-tenant" in names
    assert "spending-cap-end-user" not in names


def test_a_prepaid_plan_shows_the_credit_balance(tenant, frozen):
    CreditLedgerEntryFactory(tenant=tenant, amount_usd=Decimal("10"))
    CreditLedgerEntryFactory(tenant=tenant, kind="usage", amount_usd=Decimal("-10"))
    key = TenantAPIKeyFactory(tenant=tenant)

    credits = by_name(client_for_key(key).get(URL).json()["limits"])["credits"]

    assert credits == {
        "kind": "credits",
        "name": "credits",
        "balance_usd": "0.00000000",
        "level": "critical",
    }


# --- access and other tenants ---------------------------------------------------------------


def test_a_key_without_usage_read_is_a_403_and_no_key_a_401(tenant):
    key = TenantAPIKeyFactory(tenant=tenant, scopes=["completions"])

    assert client_for_key(key).get(URL).status_code == 403
    assert APIClient().get(URL).status_code == 401


def test_a_viewer_reads_the_limits(tenant, viewer, frozen):
    client = APIClient()
    client.force_login(viewer)

    assert client.get(URL).status_code == 200


def test_another_tenants_counters_caps_and_credits_do_not_show(tenant, other_tenant, store, frozen):
    used_up(store, other_tenant, "requests-minute", NOW_MS + 99 * 600)
    SpendingCapFactory(tenant=other_tenant, amount_usd=Decimal("1"))
    CreditLedgerEntryFactory(tenant=other_tenant, amount_usd=Decimal("500"))
    key = TenantAPIKeyFactory(tenant=tenant)

    entries = by_name(client_for_key(key).get(URL).json()["limits"])

    assert entries["requests-minute"]["used"] == 0
    assert "spending-cap-tenant" not in entries
    assert entries["credits"]["balance_usd"] == "0.00000000"
