"""The usage dashboard page: numbers from the hourly rollups, scoped to the tenant (and to a
member's own end user), filters in the URL, the CSV link, escaping, and a bounded cost."""

from __future__ import annotations

import itertools
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.db.models import Sum
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.factories import (
    CatalogModelFactory,
    EndUserFactory,
    MembershipFactory,
    ProviderFactory,
    TenantAPIKeyFactory,
)
from usage.charts import nice_ceiling
from usage.choices import Outcome
from usage.dashboard import (
    LATENCY_COLUMNS,
    Percentile,
    dashboard_window,
    latency_percentile,
)
from usage.models import TenantUsageRollup, UsageRecord, UsageRollup
from usage.rollups import roll_up_usage

URL = reverse("usage:dashboard")
SCRIPT = "<script>alert('x')</script>"
ESCAPED_SCRIPT = "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;"


def sign_in(client: Client, tenant, role: str):
    user = MembershipFactory(tenant=tenant, role=role).user
    client.force_login(user)
    return user


def add_records(tenant, *, count: int, ago: timedelta, **fields) -> list[UsageRecord]:
    """`count` records `ago` before now (a second apart), cycling outcomes and latencies."""
    start = timezone.now() - ago
    outcomes = itertools.cycle([Outcome.SUCCESS, Outcome.SUCCESS, Outcome.UPSTREAM_ERROR])
    latencies = itertools.cycle([80, 240, 420, 900, 3000, 12000])
    return UsageRecord.objects.bulk_create(
        UsageRecord(
            created_at=start + timedelta(seconds=n),
            tenant=tenant,
            request_id=uuid.uuid4(),
            outcome=next(outcomes),
            input_tokens=100 + n,
            cached_tokens=n % 5,
            output_tokens=20 + n % 7,
            cost_usd=Decimal("0.00012345") * (n + 1),
            latency_ms=next(latencies),
            **fields,
        )
        for n in range(count)
    )


def roll_up() -> None:
    roll_up_usage(now=timezone.now())


@pytest.fixture
def catalog(db):
    """Two providers with a model each; the second model's name is hostile."""
    first, second = ProviderFactory(name="Alpha"), ProviderFactory(name="Beta")
    return {
        "alpha": first,
        "beta": second,
        "alpha-model": CatalogModelFactory(provider=first, name="alpha-small"),
        "beta-model": CatalogModelFactory(provider=second, name=SCRIPT),
    }


def rollup_sums(**filters) -> dict:
    columns = ("requests", "errors", "input_tokens", "cached_tokens", "output_tokens")
    sums = UsageRollup.objects.filter(**filters).aggregate(
        **{c: Sum(c) for c in (*columns, "cost_usd", *LATENCY_COLUMNS)}
    )
    return {key: value or 0 for key, value in sums.items()}


# --- who may see what ----------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_login(client, tenant):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/login/?next=")


@pytest.mark.parametrize("role", ["owner", "admin", "member", "viewer"])
def test_every_role_sees_the_dashboard(client, tenant, role):
    sign_in(client, tenant, role)
    assert client.get(URL).status_code == 200


def test_usage_index_redirects_to_the_dashboard(client, tenant):
    sign_in(client, tenant, "viewer")
    response = client.get("/usage/")
    assert response.status_code == 302
    assert response["Location"] == URL


def test_numbers_equal_the_rollups_sums(client, tenant, other_tenant, catalog):
    sign_in(client, tenant, "viewer")
    alpha, beta = catalog["alpha"], catalog["beta"]
    add_records(
        tenant,
        count=30,
        ago=timedelta(hours=3),
        provider_id=alpha.pk,
        model_id=catalog["alpha-model"].pk,
    )
    add_records(
        tenant,
        count=12,
        ago=timedelta(days=2),
        provider_id=beta.pk,
        model_id=catalog["beta-model"].pk,
    )
    add_records(other_tenant, count=50, ago=timedelta(hours=2), provider_id=alpha.pk)
    roll_up()

    response = client.get(URL, {"period": "7d"})

    assert response.status_code == 200
    report = response.context["report"]
    expected = rollup_sums(tenant=tenant)
    assert expected["requests"] == 28  # two of every three attempts succeed
    totals = report.totals
    assert totals.requests == expected["requests"]
    assert totals.errors == expected["errors"]
    assert totals.input_tokens == expected["input_tokens"]
    assert totals.cached_tokens == expected["cached_tokens"]
    assert totals.output_tokens == expected["output_tokens"]
    assert totals.cost_usd == expected["cost_usd"]
    assert list(totals.latency_buckets) == [expected[c] for c in LATENCY_COLUMNS]
    assert sum(point.requests for point in report.series) == totals.requests

    by_provider = {group.label: group.totals for group in report.providers}
    assert set(by_provider) == {"Alpha", "Beta"}
    alpha_sums = rollup_sums(tenant=tenant, provider_id=alpha.pk)
    assert by_provider["Alpha"].requests == alpha_sums["requests"] == 20
    assert by_provider["Alpha"].errors == alpha_sums["errors"] == 10
    assert by_provider["Alpha"].cost_usd == alpha_sums["cost_usd"]
    by_model = {group.key: group for group in report.models}
    assert by_model[catalog["beta-model"].pk].totals.requests == 8
    assert by_model[catalog["beta-model"].pk].provider_label == "Beta"

    tiles = {tile.label: tile for tile in response.context["tiles"]}
    assert tiles["Requests"].value == "28"
    assert tiles["Errors"].value == "14"
    assert "33.3 % of 42 attempts" in tiles["Errors"].detail
    content = response.content.decode()
    assert 'id="chart-requests"' in content
    assert 'id="chart-tokens"' in content
    assert 'id="chart-latency"' in content
    assert 'id="chart-cost"' in content


def test_tiles_read_rollups_and_recent_requests_read_raw_records(client, tenant, catalog):
    sign_in(client, tenant, "owner")
    add_records(tenant, count=3, ago=timedelta(hours=2), provider_id=catalog["alpha"].pk)
    roll_up()
    # Written after the rollup ran: not in the sums until the next run, but listed as recent.
    add_records(tenant, count=2, ago=timedelta(minutes=5), provider_id=catalog["alpha"].pk)

    report = client.get(URL, {"period": "24h"}).context["report"]

    assert report.totals.attempts == 3
    assert len(report.recent) == 5
    assert report.recent[0].record.created_at > report.recent[-1].record.created_at


def test_the_next_rollup_run_shows_on_the_next_view(client, tenant):
    sign_in(client, tenant, "owner")
    add_records(tenant, count=3, ago=timedelta(hours=3))
    roll_up()
    assert client.get(URL, {"period": "24h"}).context["report"].totals.attempts == 3

    add_records(tenant, count=2, ago=timedelta(hours=2))
    assert client.get(URL, {"period": "24h"}).context["report"].totals.attempts == 3
    roll_up()

    assert client.get(URL, {"period": "24h"}).context["report"].totals.attempts == 5


def test_recent_requests_are_the_newest_twenty(client, tenant):
    sign_in(client, tenant, "owner")
    records = add_records(tenant, count=45, ago=timedelta(hours=5))
    roll_up()

    recent = client.get(URL, {"period": "24h"}).context["report"].recent

    assert [row.record.pk for row in recent] == [r.pk for r in reversed(records)][:20]


def test_a_member_sees_only_their_own_end_users_usage(client, tenant, catalog):
    member = sign_in(client, tenant, "member")
    mine = EndUserFactory(tenant=tenant, external_id="user:me", user=member)
    theirs = EndUserFactory(tenant=tenant, external_id="customer-9")
    add_records(tenant, count=6, ago=timedelta(hours=2), end_user=mine)
    add_records(tenant, count=9, ago=timedelta(hours=2), end_user=theirs)
    add_records(tenant, count=4, ago=timedelta(hours=2))
    roll_up()

    # Asking for someone else's usage changes nothing: a member's scope is fixed.
    response = client.get(URL, {"period": "24h", "end_user": "customer-9"})

    report = response.context["report"]
    assert report.totals.attempts == 6
    assert report.totals.requests == rollup_sums(tenant=tenant, end_user=mine)["requests"]
    assert {row.record.end_user_id for row in report.recent} == {mine.pk}
    content = response.content.decode()
    assert "customer-9" not in content
    assert 'name="end_user"' not in content
    assert 'name="api_key"' not in content


def test_a_members_requests_sent_as_their_username_are_theirs(client, tenant):
    member = sign_in(client, tenant, "member")
    # Sent with "user": "user:<username>" before the member ever opened a page: the profile
    # exists but is not linked to the login yet.
    unlinked = EndUserFactory(tenant=tenant, external_id=f"user:{member.username}")
    add_records(tenant, count=4, ago=timedelta(hours=1), end_user=unlinked)
    add_records(tenant, count=5, ago=timedelta(hours=1))
    roll_up()

    report = client.get(URL).context["report"]

    assert report.totals.attempts == 4
    unlinked.refresh_from_db()
    assert unlinked.user == member


def test_end_user_and_api_key_filters_narrow_the_numbers(client, tenant):
    sign_in(client, tenant, "admin")
    customer = EndUserFactory(tenant=tenant, external_id="customer-42")
    key = TenantAPIKeyFactory(tenant=tenant, name="backend")
    add_records(tenant, count=7, ago=timedelta(hours=2), end_user=customer, api_key=key)
    add_records(tenant, count=5, ago=timedelta(hours=2), api_key=key)
    add_records(tenant, count=3, ago=timedelta(hours=2))
    roll_up()

    by_user = client.get(URL, {"period": "24h", "end_user": "customer-42"})
    by_key = client.get(URL, {"period": "24h", "api_key": key.pk})

    assert by_user.context["report"].totals.attempts == 7
    assert by_key.context["report"].totals.attempts == 12
    assert {r.record.api_key_id for r in by_key.context["report"].recent} == {key.pk}
    both = client.get(URL, {"period": "24h", "end_user": "customer-42", "api_key": key.pk})
    assert both.context["report"].totals.attempts == 7
    assert client.get(URL, {"period": "24h"}).context["report"].totals.attempts == 15


@pytest.mark.parametrize(
    ("filters", "table"),
    [
        ({}, "usage_tenantusagerollup"),
        ({"api_key": "key"}, "usage_apikeyusagerollup"),
        ({"end_user": "customer-42"}, "usage_usagerollup"),
        ({"end_user": "customer-42", "api_key": "key"}, "usage_usagerollup"),
    ],
)
def test_each_view_sums_the_coarsest_rollup_its_filters_allow(client, tenant, filters, table):
    sign_in(client, tenant, "owner")
    customer = EndUserFactory(tenant=tenant, external_id="customer-42")
    key = TenantAPIKeyFactory(tenant=tenant)
    add_records(tenant, count=4, ago=timedelta(hours=2), end_user=customer, api_key=key)
    roll_up()
    params = {"period": "30d", **filters}
    if "api_key" in params:
        params["api_key"] = key.pk

    with CaptureQueriesContext(connection) as queries:
        response = client.get(URL, params)

    assert response.context["report"].totals.attempts == 4
    sums = [q["sql"] for q in queries.captured_queries if 'SUM("' in q["sql"]]
    assert len(sums) == 2  # per (provider, model), per time bucket
    assert [re.findall(r'FROM "(\w+)"', sql) for sql in sums] == [[table], [table]]


def test_provider_and_model_filters_keep_every_option_in_the_menus(client, tenant, catalog):
    sign_in(client, tenant, "owner")
    alpha_model = catalog["alpha-model"]
    add_records(
        tenant,
        count=4,
        ago=timedelta(hours=2),
        provider_id=catalog["alpha"].pk,
        model_id=alpha_model.pk,
    )
    add_records(
        tenant,
        count=6,
        ago=timedelta(hours=2),
        provider_id=catalog["beta"].pk,
        model_id=catalog["beta-model"].pk,
    )
    roll_up()

    report = client.get(URL, {"period": "24h", "model": alpha_model.pk}).context["report"]

    assert report.totals.attempts == 4
    assert [group.label for group in report.models] == ["alpha-small"]
    assert {option.label for option in report.provider_options} == {"Alpha", "Beta"}
    assert len(report.model_options) == 2
    assert {r.record.model_id for r in report.recent} == {alpha_model.pk}


def test_another_tenants_key_end_user_and_rows_are_never_shown(
    client, tenant, other_tenant, catalog
):
    sign_in(client, tenant, "owner")
    their_key = TenantAPIKeyFactory(tenant=other_tenant, name="their-backend")
    their_user = EndUserFactory(tenant=other_tenant, external_id="their-customer")
    add_records(
        other_tenant,
        count=8,
        ago=timedelta(hours=2),
        api_key=their_key,
        end_user=their_user,
        provider_id=catalog["beta"].pk,
    )
    add_records(tenant, count=2, ago=timedelta(hours=2), provider_id=catalog["alpha"].pk)
    roll_up()

    by_key = client.get(URL, {"period": "24h", "api_key": their_key.pk})
    by_user = client.get(URL, {"period": "24h", "end_user": "their-customer"})
    by_provider = client.get(URL, {"period": "24h", "provider": catalog["beta"].pk})

    for response in (by_key, by_user, by_provider):
        assert response.status_code == 200
        report = response.context["report"]
        assert report.totals.attempts == 0
        assert report.recent == []
        assert "their-backend" not in response.content.decode()
    assert "API key: Choose one of this tenant" in by_key.content.decode()
    assert "Beta" not in {o.label for o in by_provider.context["report"].provider_options}


def test_model_names_are_escaped_in_tables_and_charts(client, tenant, catalog):
    sign_in(client, tenant, "owner")
    add_records(
        tenant,
        count=5,
        ago=timedelta(hours=2),
        provider_id=catalog["beta"].pk,
        model_id=catalog["beta-model"].pk,
    )
    roll_up()

    content = client.get(URL, {"period": "24h"}).content.decode()

    assert SCRIPT not in content
    tables = content[content.index('id="by-model"') :]
    assert ESCAPED_SCRIPT in tables
    svg = re.search(r'<svg class="chart" id="chart-tokens".*?</svg>', content, re.S)
    assert svg is not None
    assert ESCAPED_SCRIPT in svg.group(0)
    assert "<script" not in svg.group(0)


def test_the_csv_link_carries_the_filters(client, tenant, catalog):
    sign_in(client, tenant, "owner")
    customer = EndUserFactory(tenant=tenant, external_id="customer-42")
    key = TenantAPIKeyFactory(tenant=tenant)
    add_records(
        tenant,
        count=3,
        ago=timedelta(hours=2),
        end_user=customer,
        api_key=key,
        provider_id=catalog["alpha"].pk,
        model_id=catalog["alpha-model"].pk,
    )
    add_records(tenant, count=4, ago=timedelta(hours=2))
    roll_up()
    filters = {
        "period": "custom",
        "start": "2026-01-05",
        "end": "2026-01-09",
        "end_user": "customer-42",
        "api_key": key.pk,
        "provider": catalog["alpha"].pk,
        "model": catalog["alpha-model"].pk,
    }

    csv_url = client.get(URL, filters).context["csv_url"]

    parts = urlsplit(csv_url)
    assert parts.path == "/api/v1/usage/export.csv"
    assert parse_qs(parts.query) == {
        "start": ["2026-01-05"],
        "end": ["2026-01-09"],
        "end_user": ["customer-42"],
        "api_key": [str(key.pk)],
        "provider": [str(catalog["alpha"].pk)],
        "model": [str(catalog["alpha-model"].pk)],
    }

    # The same filters over this period export exactly the matching records.
    today = timezone.now().astimezone(UTC).date()
    live = client.get(URL, {**filters, "start": today - timedelta(days=1), "end": today})
    export = client.get(live.context["csv_url"])
    assert export.status_code == 200
    lines = b"".join(export.streaming_content).decode().strip().splitlines()
    assert len(lines) == 1 + 3
    assert f'href="{live.context["csv_url"].replace("&", "&amp;")}"' in live.content.decode()


def test_a_members_csv_link_names_no_end_user(client, tenant):
    member = sign_in(client, tenant, "member")
    EndUserFactory(tenant=tenant, external_id="user:me", user=member)

    csv_url = client.get(URL, {"period": "30d", "end_user": "someone"}).context["csv_url"]

    assert "end_user" not in parse_qs(urlsplit(csv_url).query)


@pytest.mark.parametrize(
    ("params", "buckets"),
    [
        ({"period": "24h"}, 24),
        ({"period": "30d"}, 30),
        ({"period": "custom", "start": "2026-01-01", "end": "2026-01-02"}, 48),
        ({"period": "custom", "start": "2026-01-01", "end": "2026-01-31"}, 31),
    ],
)
def test_each_period_is_drawn_hourly_or_daily(client, tenant, params, buckets):
    sign_in(client, tenant, "owner")
    add_records(tenant, count=2, ago=timedelta(hours=1))
    roll_up()

    response = client.get(URL, params)

    assert response.status_code == 200
    assert len(response.context["report"].series) == buckets


def test_the_billing_month_starts_on_the_billing_day():
    now = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)

    window = dashboard_window(period="month", now=now, billing_day=12)

    assert window.start == datetime(2026, 2, 12, tzinfo=UTC)
    assert window.end == datetime(2026, 3, 10, 16, tzinfo=UTC)  # hours to come are left out
    assert window.bucket == "day"
    assert (window.first_day.isoformat(), window.last_day.isoformat()) == (
        "2026-02-12",
        "2026-03-10",
    )


def test_the_last_seven_days_are_drawn_by_the_hour_up_to_the_current_one():
    now = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)

    window = dashboard_window(period="7d", now=now, billing_day=1)

    assert window.start == datetime(2026, 3, 4, tzinfo=UTC)
    assert window.bucket_starts()[-1] == datetime(2026, 3, 10, 15, tzinfo=UTC)
    assert len(window.bucket_starts()) == 6 * 24 + 16


@pytest.mark.parametrize(
    "params",
    [
        {"period": "custom", "start": "2026-02-10", "end": "2026-02-01"},
        {"period": "custom"},
        {"period": "custom", "start": "2020-01-01", "end": "2026-01-01"},
        {"period": "yesterday"},
        {"provider": "abc"},
    ],
)
def test_invalid_filters_show_an_error_and_no_data(client, tenant, params):
    sign_in(client, tenant, "owner")
    add_records(tenant, count=2, ago=timedelta(hours=1))
    roll_up()

    response = client.get(URL, params)

    assert response.status_code == 200
    assert response.context["form"].errors
    assert response.context["report"].totals.attempts == 0
    assert "Nothing is shown until the filters are fixed." in response.content.decode()
    if params.get("period") == "custom":
        assert response.context["period"] == "custom"  # the dates to correct stay visible


def test_a_tenant_without_usage_is_told_how_to_send_a_request(client, tenant, settings):
    settings.SWITCHYARD_PUBLIC_URL = "https://gateway.example.com/"
    sign_in(client, tenant, "owner")

    content = client.get(URL).content.decode()

    assert "No requests yet — here is how to send one" in content
    assert "curl https://gateway.example.com/v1/chat/completions" in content


def test_a_tenant_with_old_usage_gets_an_empty_period_not_the_first_steps(client, tenant):
    sign_in(client, tenant, "owner")
    add_records(tenant, count=2, ago=timedelta(days=20))
    roll_up()

    content = client.get(URL, {"period": "24h"}).content.decode()

    assert "No requests yet" not in content
    assert "No usage in this period" in content


def test_latency_percentiles_interpolate_inside_the_histogram_buckets():
    # 10 attempts up to 100 ms, 10 between 100 and 250 ms.
    buckets = [10, 10, 0, 0, 0, 0, 0, 0]

    assert latency_percentile(buckets, 0.5).ms == 100
    assert latency_percentile(buckets, 0.75) == Percentile(ms=175, low_ms=100, high_ms=250)
    assert latency_percentile([0, 0, 0, 0, 0, 0, 0, 3], 0.5).above_ms == 10000
    assert latency_percentile([0] * 8, 0.5) is None


def test_latency_tiles_say_they_are_estimates_and_which_bucket_holds_them(client, tenant):
    sign_in(client, tenant, "owner")
    add_records(tenant, count=6, ago=timedelta(hours=2))  # 80, 240, 420, 900, 3000, 12000 ms
    roll_up()

    tiles = {tile.label: tile for tile in client.get(URL).context["tiles"]}

    p50, p95 = tiles["Latency p50 (est.)"], tiles["Latency p95 (est.)"]
    # The third of six attempts is the median: the top of the (250, 500] bucket.
    assert (p50.value, p50.detail) == ("500\u00a0ms", "in 250\u2013500 ms · mean 2.8 s")
    assert (p95.value, p95.detail) == (">\u00a010\u00a0s", "above the histogram's last bound")
    assert "estimate" in p50.title


@pytest.mark.parametrize(
    ("count", "axis"),
    [(0.5, 2), (1, 2), (3, 4), (7, 8), (10, 10), (11, 20), (23, 50), (240, 500), (2600, 5000)],
)
def test_count_axes_end_on_a_whole_number_with_a_whole_half(count, axis):
    assert nice_ceiling(count, whole=True) == axis
    assert (axis / 2) == int(axis / 2)


def test_charts_of_few_requests_have_whole_numbers_on_their_axes(client, tenant):
    sign_in(client, tenant, "owner")
    add_records(tenant, count=3, ago=timedelta(hours=2))  # 2 requests, 1 error in one hour
    roll_up()

    content = client.get(URL, {"period": "24h"}).content.decode()

    for chart in ("chart-requests", "chart-latency"):
        svg = content.split(f'id="{chart}"', 1)[1].split("</svg>", 1)[0]
        labels = re.findall(r'<text x="2" [^>]*>([^<]*)</text>', svg)
        assert labels == ["0", "1", "2"] if chart == "chart-latency" else ["0", "2", "4"]
    assert "2 requests, 1 error<" in content
    assert "Up to 100 ms: 1 attempt<" in content


def test_counts_are_singular_for_one_and_big_tiles_stay_short(client, tenant):
    sign_in(client, tenant, "owner")
    add_records(tenant, count=1, ago=timedelta(hours=2))
    roll_up()
    UsageRollup.objects.update(input_tokens=52_254_808)
    TenantUsageRollup.objects.update(input_tokens=52_254_808)

    tiles = {tile.label: tile for tile in client.get(URL).context["tiles"]}

    assert tiles["Errors"].detail == "0.0 % of 1 attempt"
    assert tiles["Tokens"].value == "52.3M"
    assert tiles["Tokens"].title == "52,254,828 tokens"  # and 20 output tokens
    assert (tiles["Requests"].value, tiles["Requests"].title) == ("1", "")


@pytest.mark.parametrize("role", ["owner", "member"])
def test_the_dashboard_costs_a_fixed_number_of_queries(
    client, tenant, catalog, role, django_assert_max_num_queries
):
    user = sign_in(client, tenant, role)
    profile = EndUserFactory(tenant=tenant, external_id="user:me", user=user)
    keys = [TenantAPIKeyFactory(tenant=tenant) for _ in range(3)]
    for n, key in enumerate(keys):
        add_records(
            tenant,
            count=30,
            ago=timedelta(hours=n + 1),
            api_key=key,
            end_user=profile if n == 0 else EndUserFactory(tenant=tenant),
            provider_id=catalog["alpha" if n % 2 else "beta"].pk,
            model_id=catalog["alpha-model" if n % 2 else "beta-model"].pk,
        )
    roll_up()
    client.get(URL)  # warm the session

    # The rollups are two of them: per (provider, model), and per time bucket.
    with django_assert_max_num_queries(12):
        response = client.get(URL, {"period": "30d", "provider": catalog["alpha"].pk})

    assert response.status_code == 200
