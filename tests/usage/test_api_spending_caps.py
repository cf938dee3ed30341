"""/api/v1/spending-caps: list, set (create or change), change, disable; the tenant's money."""

from __future__ import annotations

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from tenants.models import AuditLog, EndUser
from tests.factories import (
    EndUserFactory,
    MembershipFactory,
    SpendingCapFactory,
    TenantAPIKeyFactory,
)
from usage.models import SpendingCap

URL = "/api/v1/spending-caps"


def detail_url(cap) -> str:
    return f"{URL}/{cap.pk}"


def signed_in(tenant, role: str):
    user = MembershipFactory(tenant=tenant, role=role).user
    client = APIClient()
    client.force_login(user)
    return client


def with_key(tenant, scopes=("manage",), end_user=None):
    key = TenantAPIKeyFactory(tenant=tenant, scopes=list(scopes), end_user=end_user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")
    return client


TENANT_CAP = {"scope": "tenant", "amount_usd": "250.00", "mode": "soft"}


def reads(cap) -> list[tuple[str, str, dict]]:
    return [("get", URL, {}), ("get", detail_url(cap), {})]


def writes(cap) -> list[tuple[str, str, dict]]:
    return [
        ("post", URL, TENANT_CAP),
        ("patch", detail_url(cap), {"amount_usd": "1.00"}),
        ("delete", detail_url(cap), {}),
    ]


def call(client, method, url, data):
    return getattr(client, method)(url, data, format="json")


def untouched(cap) -> bool:
    cap.refresh_from_db()
    return cap.amount_usd == Decimal("100.00") and cap.is_enabled and cap.mode == "hard"


def test_anonymous_callers_get_401(tenant):
    cap = SpendingCapFactory(tenant=tenant)
    for method, url, data in reads(cap) + writes(cap):
        assert call(APIClient(), method, url, data).status_code == 401, (method, url)
    assert untouched(cap)


@pytest.mark.parametrize(
    "make_client",
    [
        pytest.param(lambda t: signed_in(t, "member"), id="member"),
        pytest.param(lambda t: with_key(t, scopes=["completions"]), id="no-read-scope"),
        pytest.param(
            lambda t: with_key(t, end_user=EndUserFactory(tenant=t)), id="bound-manage-key"
        ),
    ],
)
def test_callers_acting_for_one_end_user_or_without_a_scope_get_403(tenant, make_client):
    cap = SpendingCapFactory(tenant=tenant)
    client = make_client(tenant)
    for method, url, data in reads(cap) + writes(cap):
        response = call(client, method, url, data)
        assert response.status_code == 403, (method, url)
        assert set(response.json()) == {"detail"}
    assert untouched(cap)


@pytest.mark.parametrize(
    "make_client",
    [
        pytest.param(lambda t: signed_in(t, "viewer"), id="viewer"),
        pytest.param(lambda t: with_key(t, scopes=["usage:read"]), id="usage-read-key"),
    ],
)
def test_readers_read_but_cannot_change(tenant, make_client):
    cap = SpendingCapFactory(tenant=tenant)
    client = make_client(tenant)
    for method, url, data in reads(cap):
        assert call(client, method, url, data).status_code == 200, (method, url)
    for method, url, data in writes(cap):
        assert call(client, method, url, data).status_code == 403, (method, url)
    assert untouched(cap)
    assert SpendingCap.objects.count() == 1


def test_another_tenants_cap_is_not_found(tenant, other_tenant):
    theirs = SpendingCapFactory(tenant=other_tenant)
    client = signed_in(tenant, "owner")

    for method, url, data in reads(theirs)[1:] + writes(theirs)[1:]:
        assert call(client, method, url, data).status_code == 404, (method, url)
    assert untouched(theirs)


def test_the_list_shows_this_tenants_caps(tenant, other_tenant, django_assert_max_num_queries):
    caps = [
        SpendingCapFactory(tenant=tenant),
        SpendingCapFactory(tenant=tenant, scope="each_user", amount_usd=Decimal(5)),
        *(
            SpendingCapFactory(tenant=tenant, scope="user", end_user=EndUserFactory(tenant=tenant))
            for _ in range(3)
        ),
    ]
    SpendingCapFactory(tenant=other_tenant)
    client = with_key(tenant, scopes=["usage:read"])

    with django_assert_max_num_queries(4):
        response = client.get(URL)

    assert response.status_code == 200
    rows = response.json()["results"]
    assert {row["id"] for row in rows} == {c.pk for c in caps}
    user_row = next(r for r in rows if r["scope"] == "user")
    assert user_row["end_user"].startswith("end-user-")
    assert next(r for r in rows if r["scope"] == "tenant")["amount_usd"] == "100.00"


def test_setting_a_cap_creates_it_then_changes_it(tenant):
    client = signed_in(tenant, "owner")

    created = client.post(URL, TENANT_CAP, format="json")
    changed = client.post(
        URL, {**TENANT_CAP, "amount_usd": "300", "alert_thresholds": [90, 50]}, format="json"
    )

    assert created.status_code == 201, created.content
    assert changed.status_code == 200
    cap = SpendingCap.objects.get()
    assert (cap.scope, cap.amount_usd, cap.mode) == ("tenant", Decimal("300.00"), "soft")
    assert cap.alert_thresholds == [50, 90]
    assert changed.json()["amount_usd"] == "300.00"
    assert list(AuditLog.objects.order_by("pk").values_list("action", flat=True)) == [
        "spending_cap.created",
        "spending_cap.updated",
    ]


def test_a_cap_for_one_end_user_names_them(tenant):
    client = with_key(tenant)

    response = client.post(
        URL, {"scope": "user", "end_user": "alice", "amount_usd": "10"}, format="json"
    )

    assert response.status_code == 201, response.content
    assert response.json()["end_user"] == "alice"
    assert response.json()["mode"] == "hard"
    cap = SpendingCap.objects.get()
    assert cap.end_user == EndUser.objects.get(tenant=tenant, external_id="alice")
    assert AuditLog.objects.get().action == "spending_cap.created"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"scope": "user", "amount_usd": "10"}, id="user-without-end-user"),
        pytest.param({**TENANT_CAP, "end_user": "alice"}, id="end-user-on-a-tenant-cap"),
        pytest.param({**TENANT_CAP, "amount_usd": "-1"}, id="negative"),
        pytest.param({**TENANT_CAP, "amount_usd": "1.005"}, id="sub-cent"),
        pytest.param({**TENANT_CAP, "amount_usd": "abc"}, id="not-a-number"),
        pytest.param({**TENANT_CAP, "mode": "panic"}, id="bad-mode"),
        pytest.param({**TENANT_CAP, "scope": "galaxy"}, id="bad-scope"),
        pytest.param({**TENANT_CAP, "alert_thresholds": [0, 150]}, id="bad-thresholds"),
    ],
)
def test_invalid_caps_are_a_400_and_nothing_is_saved(tenant, data):
    client = signed_in(tenant, "admin")

    response = client.post(URL, data, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"detail"}
    assert not SpendingCap.objects.exists()
    assert not EndUser.objects.exists()
    assert not AuditLog.objects.exists()


def test_patch_changes_the_named_fields(tenant):
    cap = SpendingCapFactory(tenant=tenant, alert_thresholds=[50, 80, 100])
    client = signed_in(tenant, "admin")

    response = client.patch(detail_url(cap), {"mode": "soft"}, format="json")
    invalid = client.patch(detail_url(cap), {"amount_usd": "-5"}, format="json")

    assert response.status_code == 200
    assert invalid.status_code == 400
    cap.refresh_from_db()
    assert (cap.amount_usd, cap.mode, cap.alert_thresholds) == (
        Decimal("100.00"),
        "soft",
        [50, 80, 100],
    )
    assert AuditLog.objects.get().action == "spending_cap.updated"


def test_delete_disables_the_cap_and_keeps_it(tenant):
    cap = SpendingCapFactory(tenant=tenant)
    client = with_key(tenant)

    response = client.delete(detail_url(cap))

    assert response.status_code == 204
    cap.refresh_from_db()
    assert cap.is_enabled is False
    assert cap.amount_usd == Decimal("100.00")
    entry = AuditLog.objects.get()
    assert entry.action == "spending_cap.updated"
    assert entry.changes["after"] == ["100.00", "hard", False]
    assert client.get(detail_url(cap)).json()["is_enabled"] is False
