"""GET /api/v1/credits: the balance is the ledger's sum; entries newest first, paginated."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from tests.factories import CreditLedgerEntryFactory, EndUserFactory, TenantAPIKeyFactory
from usage import selectors

URL = "/api/v1/credits"
MIXED = [
    ("grant", "25.00"),
    ("purchase", "10.10"),
    ("usage", "-0.00123456"),
    ("platform_fee", "-0.00012345"),
    ("usage", "-3.33333333"),
    ("adjustment", "-1.05"),
]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def client_for_key(key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")
    return client


def client_for_user(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def ledger(tenant):
    return [
        CreditLedgerEntryFactory(tenant=tenant, kind=kind, amount_usd=Decimal(amount))
        for kind, amount in MIXED
    ]


def test_the_balance_equals_the_ledger_sum_after_mixed_entries(tenant, ledger):
    key = TenantAPIKeyFactory(tenant=tenant)

    body = client_for_key(key).get(URL).json()

    expected = sum(Decimal(amount) for _, amount in MIXED)
    assert Decimal(body["balance_usd"]) == expected == Decimal("30.71530866")
    assert Decimal(body["balance_usd"]) == selectors.credit_balance(tenant_id=tenant.pk)
    assert body["balance_usd"] == "30.71530866"
    assert Decimal(body["balance_usd"]).quantize(Decimal("0.01")) == Decimal("30.72")


def test_entries_are_newest_first_with_signed_amounts(tenant, ledger):
    key = TenantAPIKeyFactory(tenant=tenant)

    body = client_for_key(key).get(URL).json()

    assert body["count"] == len(MIXED)
    assert [(e["kind"], e["amount_usd"]) for e in body["entries"]] == [
        (kind, f"{Decimal(amount):.8f}") for kind, amount in reversed(MIXED)
    ]
    assert set(body["entries"][0]) == {"id", "created_at", "kind", "amount_usd", "reason"}


def test_entries_are_paginated_but_the_balance_is_the_whole_ledgers(tenant, ledger):
    key = TenantAPIKeyFactory(tenant=tenant)

    first = client_for_key(key).get(URL, {"limit": 2}).json()
    last = client_for_key(key).get(URL, {"limit": 2, "offset": 4}).json()

    assert [e["id"] for e in first["entries"]] == [ledger[5].pk, ledger[4].pk]
    assert [e["id"] for e in last["entries"]] == [ledger[1].pk, ledger[0].pk]
    assert first["next"] is not None
    assert first["previous"] is None
    assert last["next"] is None
    assert first["balance_usd"] == last["balance_usd"] == "30.71530866"


def test_an_empty_ledger_has_a_zero_balance(tenant):
    key = TenantAPIKeyFactory(tenant=tenant)

    body = client_for_key(key).get(URL).json()

    assert (Decimal(body["balance_usd"]), body["count"], body["entries"]) == (0, 0, [])


def test_a_viewer_reads_the_ledger(tenant, ledger, viewer):
    response = client_for_user(viewer).get(URL)

    assert response.status_code == 200
    assert response.json()["count"] == len(MIXED)


def test_a_member_cannot_read_the_tenants_ledger(tenant, ledger, member):
    response = client_for_user(member).get(URL)

    assert response.status_code == 403


def test_a_key_bound_to_an_end_user_cannot_read_the_tenants_ledger(tenant, ledger):
    key = TenantAPIKeyFactory(tenant=tenant, end_user=EndUserFactory(tenant=tenant))

    assert client_for_key(key).get(URL).status_code == 403


def test_a_key_without_usage_read_is_a_403_and_no_key_a_401(tenant, ledger):
    key = TenantAPIKeyFactory(tenant=tenant, scopes=["completions"])

    assert client_for_key(key).get(URL).status_code == 403
    assert APIClient().get(URL).status_code == 401


def test_another_tenants_ledger_is_invisible(tenant, other_tenant, ledger):
    CreditLedgerEntryFactory(tenant=other_tenant, amount_usd=Decimal("1000"))
    key = TenantAPIKeyFactory(tenant=tenant)
    other_key = TenantAPIKeyFactory(tenant=other_tenant)

    mine = client_for_key(key).get(URL).json()
    theirs = client_for_key(other_key).get(URL).json()

    assert mine["balance_usd"] == "30.71530866"
    assert {e["id"] for e in mine["entries"]} == {entry.pk for entry in ledger}
    assert (theirs["balance_usd"], theirs["count"]) == ("1000.00000000", 1)


def test_the_ledger_list_costs_a_fixed_number_of_queries(
    tenant, ledger, django_assert_max_num_queries
):
    key = TenantAPIKeyFactory(tenant=tenant)
    client = client_for_key(key)

    # The key, the count, the page, the balance.
    with django_assert_max_num_queries(4):
        response = client.get(URL)

    assert response.status_code == 200
