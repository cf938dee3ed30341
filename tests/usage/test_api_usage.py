"""GET /api/v1/usage: grouped sums, filters, the default period, who may see what."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from tenants.services import end_user_for_login, revoke_api_key, update_tenant
from tests.factories import (
    CatalogModelFactory,
    EndUserFactory,
    MembershipFactory,
    ProviderFactory,
    TenantAPIKeyFactory,
    UsageRecordFactory,
)
from usage.choices import Outcome

URL = "/api/v1/usage"
MARCH = {"start": "2025-03-01", "end": "2025-03-31"}


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


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def world(tenant, other_tenant):
    """Two providers and models, two end users and keys, four March attempts (one request
    fell back from alpha to beta), records just outside March, and another tenant's record."""
    alpha, beta = ProviderFactory(name="Alpha"), ProviderFactory(name="Beta")
    small = CatalogModelFactory(provider=alpha, name="alpha-small")
    large = CatalogModelFactory(provider=beta, name="beta-large")
    alice = EndUserFactory(tenant=tenant, external_id="alice")
    bob = EndUserFactory(tenant=tenant, external_id="bob")
    key = TenantAPIKeyFactory(tenant=tenant, name="backend")
    key2 = TenantAPIKeyFactory(tenant=tenant, name="batch")

    def record(when, provider, model, end_user, api_key, **fields):
        return UsageRecordFactory(
            tenant=tenant,
            created_at=at(when),
            provider_id=provider.pk,
            model_id=model.pk,
            end_user=end_user,
            api_key=api_key,
            **fields,
        )

    ok = {"outcome": Outcome.SUCCESS}
    record(
        "2025-03-03T10:00",
        alpha,
        small,
        alice,
        key,
        **ok,
        input_tokens=100,
        cached_tokens=10,
        output_tokens=20,
        cost_usd=Decimal("0.001"),
        latency_ms=200,
    )
    record(
        "2025-03-03T23:59",
        beta,
        large,
        bob,
        key2,
        **ok,
        input_tokens=50,
        output_tokens=5,
        cost_usd=Decimal("0.0025"),
        latency_ms=400,
    )
    fell_back = uuid.uuid4()
    record(
        "2025-03-04T00:00",
        alpha,
        small,
        alice,
        key,
        outcome=Outcome.UPSTREAM_ERROR,
        request_id=fell_back,
        input_tokens=0,
        output_tokens=0,
        cost_usd=Decimal(0),
        latency_ms=1000,
        http_status=503,
    )
    record(
        "2025-03-04T00:00:01",
        beta,
        large,
        alice,
        key,
        **ok,
        request_id=fell_back,
        attempt=2,
        input_tokens=30,
        output_tokens=7,
        cost_usd=Decimal("0.0005"),
        latency_ms=300,
    )
    record("2025-02-28T23:59:59", alpha, small, alice, key, **ok)
    record("2025-04-01T00:00", alpha, small, alice, key, **ok)

    other_key = TenantAPIKeyFactory(tenant=other_tenant)
    other_alice = EndUserFactory(tenant=other_tenant, external_id="alice")
    UsageRecordFactory(
        tenant=other_tenant,
        created_at=at("2025-03-03T12:00"),
        provider_id=alpha.pk,
        model_id=small.pk,
        end_user=other_alice,
        api_key=other_key,
        cost_usd=Decimal("7"),
    )
    return {
        "alpha": alpha,
        "beta": beta,
        "small": small,
        "large": large,
        "alice": alice,
        "bob": bob,
        "key": key,
        "key2": key2,
        "other_key": other_key,
    }


def summary(row: dict) -> tuple:
    return (
        row["requests"],
        row["errors"],
        row["input_tokens"],
        row["cached_tokens"],
        row["output_tokens"],
        Decimal(row["cost_usd"]),
        row["avg_latency_ms"],
    )


ALICE = (2, 1, 130, 10, 27, Decimal("0.0015"), 500)
BOB = (1, 0, 50, 0, 5, Decimal("0.0025"), 400)
ALPHA = (1, 1, 100, 10, 20, Decimal("0.001"), 600)
BETA = (2, 0, 80, 0, 12, Decimal("0.003"), 350)
TOTAL = (3, 1, 180, 10, 32, Decimal("0.004"), 475)


def test_grouping_by_day_sums_each_utc_day(world):
    response = client_for_key(world["key"]).get(URL, {**MARCH, "group_by": "day"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["group_by"], body["start"], body["end"]) == ("day", "2025-03-01", "2025-03-31")
    assert [(r["key"], r["label"], summary(r)) for r in body["results"]] == [
        ("2025-03-03", "2025-03-03", (2, 0, 150, 10, 25, Decimal("0.0035"), 300)),
        ("2025-03-04", "2025-03-04", (1, 1, 30, 0, 7, Decimal("0.0005"), 650)),
    ]
    assert summary(body["totals"]) == TOTAL


@pytest.mark.parametrize(
    ("group_by", "expected"),
    [
        (
            "provider",
            lambda w: {str(w["beta"].pk): ("Beta", BETA), str(w["alpha"].pk): ("Alpha", ALPHA)},
        ),
        (
            "model",
            lambda w: {
                str(w["large"].pk): ("beta-large", BETA),
                str(w["small"].pk): ("alpha-small", ALPHA),
            },
        ),
        ("end_user", lambda w: {"bob": ("bob", BOB), "alice": ("alice", ALICE)}),
        (
            "api_key",
            lambda w: {
                str(w["key2"].pk): (f"batch ({w['key2'].prefix}…)", BOB),
                str(w["key"].pk): (f"backend ({w['key'].prefix}…)", ALICE),
            },
        ),
    ],
)
def test_grouping_sums_attempts_per_group_with_names(world, group_by, expected):
    response = client_for_key(world["key"]).get(URL, {**MARCH, "group_by": group_by})

    assert response.status_code == 200, response.content
    body = response.json()
    got = {r["key"]: (r["label"], summary(r)) for r in body["results"]}
    assert got == expected(world)
    # Largest cost first.
    assert [r["key"] for r in body["results"]] == list(expected(world))


@pytest.mark.parametrize("group_by", ["day", "provider", "model", "end_user", "api_key"])
def test_totals_equal_the_sum_of_the_groups(world, group_by):
    body = client_for_key(world["key"]).get(URL, {**MARCH, "group_by": group_by}).json()

    sums = [sum(summary(r)[i] for r in body["results"]) for i in range(6)]
    assert tuple(sums) == summary(body["totals"])[:6] == TOTAL[:6]


def test_records_without_a_provider_group_under_none(tenant):
    key = TenantAPIKeyFactory(tenant=tenant)
    UsageRecordFactory(
        tenant=tenant,
        created_at=at("2025-03-05T08:00"),
        provider_id=None,
        outcome=Outcome.CONNECT_ERROR,
    )

    body = client_for_key(key).get(URL, {**MARCH, "group_by": "provider"}).json()

    assert [(r["key"], r["label"], r["errors"]) for r in body["results"]] == [(None, "(none)", 1)]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (lambda w: {"provider": w["alpha"].pk}, ALPHA),
        (lambda w: {"model": w["large"].pk}, BETA),
        (lambda w: {"end_user": "bob"}, BOB),
        (lambda w: {"api_key": w["key"].pk}, ALICE),
        (
            lambda w: {"api_key": w["key"].pk, "provider": w["beta"].pk},
            (1, 0, 30, 0, 7, Decimal("0.0005"), 300),
        ),
        (lambda w: {"end_user": "", "api_key": ""}, TOTAL),  # empty parameters mean no filter
    ],
)
def test_filters_narrow_the_records(world, params, expected):
    body = client_for_key(world["key"]).get(URL, {**MARCH, **params(world)}).json()

    assert summary(body["totals"]) == expected


def test_the_default_period_is_the_current_billing_month(tenant, monkeypatch):
    update_tenant(tenant=tenant, billing_day=15)
    monkeypatch.setattr(timezone, "now", lambda: at("2025-03-20T12:00"))
    key = TenantAPIKeyFactory(tenant=tenant)
    for when, tokens in [
        ("2025-03-14T23:59:59", 1),  # previous period
        ("2025-03-15T00:00", 10),
        ("2025-04-14T23:59:59", 100),
        ("2025-04-15T00:00", 1000),  # next period
    ]:
        UsageRecordFactory(tenant=tenant, created_at=at(when), input_tokens=tokens)

    body = client_for_key(key).get(URL).json()

    assert (body["group_by"], body["start"], body["end"]) == ("day", "2025-03-15", "2025-04-14")
    assert body["totals"]["input_tokens"] == 110


def test_a_missing_bound_defaults_to_the_billing_month(tenant, monkeypatch):
    monkeypatch.setattr(timezone, "now", lambda: at("2025-03-20T12:00"))
    key = TenantAPIKeyFactory(tenant=tenant)

    body = client_for_key(key).get(URL, {"start": "2025-03-10"}).json()

    assert (body["start"], body["end"]) == ("2025-03-10", "2025-03-31")


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"group_by": "week"}, "group_by"),
        ({"start": "2025-02-30"}, "start"),
        ({"start": "03/01/2025"}, "start"),
        ({"start": "2025-03-10", "end": "2025-03-09"}, "after"),
        ({"start": "2024-01-01", "end": "2025-02-04"}, "400 days"),  # 401 days
        ({"api_key": "abc"}, "api_key"),
        ({"provider": "0"}, "provider"),
        ({"model": "99999999999"}, "model"),
    ],
)
def test_bad_parameters_are_a_400_with_detail(tenant, params, fragment):
    key = TenantAPIKeyFactory(tenant=tenant)

    response = client_for_key(key).get(URL, params)

    assert response.status_code == 400
    assert list(response.json()) == ["detail"]
    assert fragment in response.json()["detail"]


def test_the_longest_range_is_400_days(tenant):
    key = TenantAPIKeyFactory(tenant=tenant)

    response = client_for_key(key).get(URL, {"start": "2024-01-01", "end": "2025-02-03"})

    assert response.status_code == 200


def test_the_usage_list_costs_a_fixed_number_of_queries(world, django_assert_max_num_queries):
    client = client_for_key(world["key"])
    for _ in range(20):
        UsageRecordFactory(
            tenant=world["key"].tenant,
            created_at=at("2025-03-09T09:00"),
            provider_id=world["beta"].pk,
            model_id=world["large"].pk,
        )

    # The key (with tenant and plan), the grouped sums, the providers' names.
    with django_assert_max_num_queries(3):
        response = client.get(URL, {**MARCH, "group_by": "provider"})

    assert response.status_code == 200


# --- authentication and roles ---------------------------------------------------------------


def test_no_credentials_is_a_401_with_a_bearer_challenge(world):
    response = APIClient().get(URL)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert "detail" in response.json()


@pytest.mark.parametrize(
    "header",
    [
        "Bearer sy-notakeyatall0000000000000000000000000000000",
        "Bearer not-even-our-format",
        "Bearer",
        "Bearer two parts",
    ],
)
def test_an_unknown_or_malformed_key_is_a_401(world, header):
    response = APIClient().get(URL, HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert list(response.json()) == ["detail"]


def test_a_revoked_key_is_a_401_that_does_not_echo_the_key(world):
    key = world["key"]
    revoke_api_key(key=key)

    response = client_for_key(key).get(URL)

    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]
    assert key.raw_key not in response.content.decode()
    assert key.raw_key[len(key.prefix) :] not in response.content.decode()


def test_a_key_without_the_usage_read_scope_is_a_403(tenant):
    key = TenantAPIKeyFactory(tenant=tenant, scopes=["completions", "models"])

    response = client_for_key(key).get(URL)

    assert response.status_code == 403
    assert "usage:read" in response.json()["detail"]


def test_a_suspended_tenants_key_is_a_403(tenant):
    key = TenantAPIKeyFactory(tenant=tenant)
    update_tenant(tenant=tenant, is_active=False)

    response = client_for_key(key).get(URL)

    assert response.status_code == 403
    assert "suspended" in response.json()["detail"]


def test_a_viewer_session_reads_the_whole_tenant(world, viewer):
    response = client_for_user(viewer).get(URL, MARCH)

    assert response.status_code == 200
    assert summary(response.json()["totals"]) == TOTAL


def test_a_member_sees_only_their_own_end_users_usage(world, tenant, member):
    profile = end_user_for_login(tenant=tenant, user=member)
    UsageRecordFactory(
        tenant=tenant,
        created_at=at("2025-03-05T10:00"),
        end_user=profile,
        input_tokens=42,
        cost_usd=Decimal("0.42"),
    )
    client = client_for_user(member)

    whole = client.get(URL, {**MARCH, "group_by": "end_user"}).json()
    asking_for_alice = client.get(URL, {**MARCH, "end_user": "alice"}).json()

    assert [(r["key"], r["input_tokens"]) for r in whole["results"]] == [(profile.external_id, 42)]
    assert whole["totals"]["cost_usd"] == "0.42000000"
    assert asking_for_alice["results"] == []


def test_a_key_bound_to_an_end_user_sees_only_that_end_users_usage(world, tenant):
    bound = TenantAPIKeyFactory(tenant=tenant, end_user=world["bob"])

    body = client_for_key(bound).get(URL, {**MARCH, "group_by": "end_user"}).json()

    assert [r["key"] for r in body["results"]] == ["bob"]
    assert summary(body["totals"]) == BOB


def test_anonymous_session_is_refused(world):
    client = APIClient()
    client.logout()

    assert client.get(URL).status_code == 401


def test_a_login_user_without_a_membership_is_a_403(db):
    from tests.factories import UserFactory

    response = client_for_user(UserFactory()).get(URL)

    assert response.status_code == 403


def test_the_session_tenant_must_be_one_of_the_users_memberships(
    world, tenant, other_tenant, viewer
):
    client = client_for_user(viewer)
    session = client.session
    session["tenant_id"] = other_tenant.pk  # not a member there
    session.save()

    body = client.get(URL, MARCH).json()

    assert summary(body["totals"]) == TOTAL  # tenant A's, not B's
    assert client.session["tenant_id"] == tenant.pk


def test_a_user_in_two_tenants_reads_the_one_chosen_in_the_session(world, other_tenant, viewer):
    MembershipFactory(tenant=other_tenant, user=viewer, role="viewer")
    client = client_for_user(viewer)
    session = client.session
    session["tenant_id"] = other_tenant.pk
    session.save()

    body = client.get(URL, MARCH).json()

    assert body["totals"]["cost_usd"] == "7.00000000"


# --- other tenants ---------------------------------------------------------------------------


def test_another_tenants_usage_is_never_counted(world):
    body = client_for_key(world["key"]).get(URL, {**MARCH, "group_by": "api_key"}).json()

    assert str(world["other_key"].pk) not in {r["key"] for r in body["results"]}
    assert summary(body["totals"]) == TOTAL


def test_filtering_by_another_tenants_key_returns_nothing(world):
    body = client_for_key(world["key"]).get(URL, {**MARCH, "api_key": world["other_key"].pk})

    assert body.status_code == 200
    assert body.json()["results"] == []
    assert body.json()["totals"]["requests"] == 0


def test_filtering_by_an_end_user_id_matches_only_this_tenants_end_user(world):
    # Both tenants have an "alice"; only tenant A's is counted, B's is not revealed.
    alice = client_for_key(world["key"]).get(URL, {**MARCH, "end_user": "alice"}).json()
    carol = client_for_key(world["key"]).get(URL, {**MARCH, "end_user": "carol"}).json()

    assert summary(alice["totals"]) == ALICE
    assert carol["results"] == []


def test_the_other_tenants_key_reads_only_its_own_usage(world):
    body = client_for_key(world["other_key"]).get(URL, MARCH).json()

    assert body["totals"]["cost_usd"] == "7.00000000"
    assert body["totals"]["requests"] == 1
