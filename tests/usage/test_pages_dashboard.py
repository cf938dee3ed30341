"""The usage dashboard page: numbers from the hourly rollups and the requests they do not hold
yet, scoped to the tenant (and to a member's own end user), filters in the URL, the CSV link,
escaping, and a bounded cost."""

from __future__ import annotations

import bisect
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
from usage.models import (
    LATENCY_BUCKETS_MS,
    TenantUsageRollup,
    UsageRecord,
    UsageRollup,
    UsageRollupState,
)
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


def test_requests_after_the_last_rollup_run_count_at_once(client, tenant, catalog):
    sign_in(client, tenant, "owner")
    add_records(tenant, count=3, ago=timedelta(hours=3), provider_id=catalog["alpha"].pk)
    roll_up_usage(now=timezone.now() - timedelta(hours=1))  # complete before the last hour
    # Written since: summed from the records themselves, and listed as recent.
    add_records(tenant, count=2, ago=timedelta(minutes=30), provider_id=catalog["alpha"].pk)

    report = client.get(URL, {"period": "24h"}).context["report"]

    assert report.totals.attempts == 5
    assert len(report.recent) == 5
    assert report.recent[0].record.created_at > report.recent[-1].record.created_at


def test_a_late_record_for_a_rolled_up_hour_counts_from_the_next_run(client, tenant):
    sign_in(client, tenant, "owner")
    add_records(tenant, count=3, ago=timedelta(hours=3))
    roll_up()
    assert client.get(URL, {"period": "24h"}).context["report"].totals.attempts == 3

    # Written late for hours the job has rolled up: not read raw (no double count) ...
    add_records(tenant, count=2, ago=timedelta(hours=2))
    add_records(tenant, count=1, ago=timedelta(hours=3))
    assert client.get(URL, {"period": "24h"}).context["report"].totals.attempts == 3
    roll_up()

    # ... but added to their hours' rollups by the next run, once.
    assert client.get(URL, {"period": "24h"}).context["report"].totals.attempts == 6
    roll_up()
    assert client.get(URL, {"period": "24h"}).context["report"].totals.attempts == 6


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
    # Rollups per (provider, model) and per time bucket, then the hours since the last run.
    assert [re.findall(r'FROM "(\w+)"', sql) for sql in sums] == [
        [table],
        [table],
        ["usage_usagerecord"],
    ]


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


def add_theirs(other_tenant, *, ago: timedelta, **routing):
    """Eight records of another tenant, by its key "their-backend" for its end user
    "their-customer"; returns the key."""
    their_key = TenantAPIKeyFactory(tenant=other_tenant, name="their-backend")
    their_user = EndUserFactory(tenant=other_tenant, external_id="their-customer")
    add_records(other_tenant, count=8, ago=ago, api_key=their_key, end_user=their_user, **routing)
    return their_key


def test_another_tenants_key_end_user_and_rows_are_never_shown(
    client, tenant, other_tenant, catalog
):
    sign_in(client, tenant, "owner")
    their_key = add_theirs(other_tenant, ago=timedelta(hours=2), provider_id=catalog["beta"].pk)
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

    # The rollups are two of them: per (provider, model), and per time bucket; the hours
    # since the last rollup run one more.
    with django_assert_max_num_queries(13):
        response = client.get(URL, {"period": "30d", "provider": catalog["alpha"].pk})

    assert response.status_code == 200


# --- requests the rollups do not hold yet: read from the records, once ---------------------


def record_sums(records) -> dict:
    """rollup_sums of `records`, summed in Python."""
    sums = dict.fromkeys(("requests", "errors", "input_tokens", "cached_tokens"), 0)
    sums.update(dict.fromkeys(("output_tokens", *LATENCY_COLUMNS), 0), cost_usd=Decimal(0))
    for r in records:
        sums["requests" if r.outcome == Outcome.SUCCESS else "errors"] += 1
        for column in ("input_tokens", "cached_tokens", "output_tokens", "cost_usd"):
            sums[column] += getattr(r, column)
        index = bisect.bisect_left(LATENCY_BUCKETS_MS, r.latency_ms)
        sums[LATENCY_COLUMNS[index]] += 1
    return sums


def report_sums(report) -> dict:
    totals = report.totals
    return {
        "requests": totals.requests,
        "errors": totals.errors,
        "input_tokens": totals.input_tokens,
        "cached_tokens": totals.cached_tokens,
        "output_tokens": totals.output_tokens,
        "cost_usd": totals.cost_usd,
        **dict(zip(LATENCY_COLUMNS, totals.latency_buckets, strict=True)),
    }


def everything_drawn(report) -> tuple:
    """What the tiles, charts, tables and menus show."""
    return (
        report.totals,
        report.series,
        report.providers,
        report.models,
        report.provider_options,
        report.model_options,
    )


def routed(catalog, name: str) -> dict:
    return {"provider_id": catalog[name].pk, "model_id": catalog[f"{name}-model"].pk}


def test_a_new_tenants_first_requests_show_before_the_rollup_job_ever_ran(client, tenant, catalog):
    sign_in(client, tenant, "owner")
    records = [
        *add_records(tenant, count=4, ago=timedelta(minutes=30), **routed(catalog, "alpha")),
        *add_records(tenant, count=2, ago=timedelta(hours=5), **routed(catalog, "beta")),
    ]
    assert not UsageRollupState.objects.exists()

    response = client.get(URL, {"period": "24h"})

    report = response.context["report"]
    assert report_sums(report) == record_sums(records)
    assert sum(point.requests for point in report.series) == report.totals.requests == 5
    assert {group.label for group in report.providers} == {"Alpha", "Beta"}
    tiles = {tile.label: tile for tile in response.context["tiles"]}
    assert (tiles["Requests"].value, tiles["Errors"].value) == ("5", "1")
    content = response.content.decode()
    assert "No requests yet" not in content
    assert 'id="chart-requests"' in content
    assert "count every request up to now, as it is recorded" in content

    # A week: the job never ran, so the records are read a day back (all of these).
    week = client.get(URL, {"period": "7d"})
    assert report_sums(week.context["report"]) == record_sums(records)
    assert "The hourly rollup job has not run yet." in week.content.decode()


@pytest.mark.parametrize(
    "params",
    [
        {"period": "24h"},
        {"period": "7d"},
        {"period": "30d"},
        {"period": "7d", "provider": "alpha"},
        {"period": "30d", "model": "beta-model"},
    ],
)
def test_the_rollup_job_running_changes_no_number(client, tenant, catalog, params):
    sign_in(client, tenant, "owner")
    params = {k: catalog[v].pk if k != "period" else v for k, v in params.items()}
    records = [
        *add_records(tenant, count=7, ago=timedelta(hours=3), **routed(catalog, "alpha")),
        *add_records(tenant, count=5, ago=timedelta(minutes=90), **routed(catalog, "beta")),
        *add_records(tenant, count=4, ago=timedelta(minutes=30), **routed(catalog, "alpha")),
        # This hour's: rolled up below, yet still read from the records (not twice).
        *add_records(tenant, count=1, ago=timedelta(0), **routed(catalog, "beta")),
    ]
    before = client.get(URL, params).context["report"]

    roll_up()
    after = client.get(URL, params).context["report"]
    roll_up_usage(now=timezone.now() + timedelta(minutes=2))  # the second scan
    again = client.get(URL, params).context["report"]

    assert everything_drawn(after) == everything_drawn(before)
    assert everything_drawn(again) == everything_drawn(before)
    wanted = [
        r
        for r in records
        if params.get("provider", r.provider_id) == r.provider_id
        and params.get("model", r.model_id) == r.model_id
    ]
    assert report_sums(after) == record_sums(wanted)
    assert after.rolled_up_before is not None
    assert sum(point.attempts for point in after.series) == after.totals.attempts


def test_hours_since_the_last_run_are_read_raw_and_the_rollups_of_them_ignored(
    client, tenant, catalog
):
    sign_in(client, tenant, "owner")
    earlier = add_records(tenant, count=6, ago=timedelta(hours=4), **routed(catalog, "beta"))
    recent = add_records(tenant, count=5, ago=timedelta(minutes=30), **routed(catalog, "alpha"))
    # A run an hour ago (by its clock) rolled up every record, the recent ones too, but holds
    # only the hours before the last one complete: those are read from the records.
    roll_up_usage(now=timezone.now() - timedelta(hours=1))
    assert UsageRollup.objects.filter(provider_id=catalog["alpha"].pk).exists()

    response = client.get(URL, {"period": "24h"})

    report = response.context["report"]
    assert report_sums(report) == record_sums(earlier + recent)
    by_provider = {group.label: group.totals.attempts for group in report.providers}
    assert by_provider == {"Alpha": 5, "Beta": 6}
    assert "from hourly rollups, later ones from the requests as they are recorded" in (
        response.content.decode()
    )


@pytest.mark.parametrize("rolled_up", [False, True])
def test_every_filter_applies_to_the_requests_not_rolled_up_yet(client, tenant, catalog, rolled_up):
    sign_in(client, tenant, "admin")
    customer = EndUserFactory(tenant=tenant, external_id="customer-42")
    key = TenantAPIKeyFactory(tenant=tenant, name="backend")
    kinds = [
        ({"end_user": customer, "api_key": key, **routed(catalog, "alpha")}, 5),
        ({"api_key": key, **routed(catalog, "beta")}, 4),
        ({"end_user": customer, **routed(catalog, "beta")}, 3),
        (routed(catalog, "alpha"), 2),
    ]
    records = []
    if rolled_up:  # some hours from rollups, the last one from records
        for fields, count in kinds:
            records += add_records(tenant, count=count, ago=timedelta(hours=3), **fields)
        roll_up_usage(now=timezone.now() - timedelta(hours=1))
    for fields, count in kinds:
        records += add_records(tenant, count=count, ago=timedelta(minutes=30), **fields)
    alpha, beta_model = catalog["alpha"].pk, catalog["beta-model"].pk

    for params, keep in [
        ({"end_user": "customer-42"}, lambda r: r.end_user_id == customer.pk),
        ({"api_key": key.pk}, lambda r: r.api_key_id == key.pk),
        ({"provider": alpha}, lambda r: r.provider_id == alpha),
        ({"model": beta_model}, lambda r: r.model_id == beta_model),
        (
            {"end_user": "customer-42", "provider": alpha},
            lambda r: r.end_user_id == customer.pk and r.provider_id == alpha,
        ),
        (
            {"api_key": key.pk, "model": beta_model},
            lambda r: r.api_key_id == key.pk and r.model_id == beta_model,
        ),
    ]:
        report = client.get(URL, {"period": "24h", **params}).context["report"]

        wanted = [r for r in records if keep(r)]
        assert report_sums(report) == record_sums(wanted), params
        assert sum(point.attempts for point in report.series) == len(wanted), params
        assert {row.record.pk for row in report.recent} <= {r.pk for r in wanted}, params
    menus = client.get(URL, {"period": "24h", "provider": alpha}).context["report"]
    assert {option.label for option in menus.provider_options} == {"Alpha", "Beta"}


def test_another_tenants_requests_never_show_before_they_are_rolled_up(
    client, tenant, other_tenant, catalog
):
    sign_in(client, tenant, "owner")
    their_key = add_theirs(other_tenant, ago=timedelta(minutes=30), **routed(catalog, "beta"))
    ours = add_records(tenant, count=2, ago=timedelta(minutes=30), **routed(catalog, "alpha"))

    everything = client.get(URL, {"period": "24h"})
    by_key = client.get(URL, {"period": "24h", "api_key": their_key.pk})
    by_user = client.get(URL, {"period": "24h", "end_user": "their-customer"})
    by_provider = client.get(URL, {"period": "24h", "provider": catalog["beta"].pk})

    assert report_sums(everything.context["report"]) == record_sums(ours)
    assert {o.label for o in everything.context["report"].provider_options} == {"Alpha"}
    for response in (by_key, by_user, by_provider):
        assert response.status_code == 200
        report = response.context["report"]
        assert report.totals.attempts == 0
        assert report.recent == []
        assert "their-backend" not in response.content.decode()
    assert "Beta" not in {o.label for o in by_provider.context["report"].provider_options}


def test_a_job_far_behind_shows_what_it_rolled_up_and_a_day_of_records(client, tenant):
    sign_in(client, tenant, "owner")
    old = add_records(tenant, count=4, ago=timedelta(hours=50))
    new = add_records(tenant, count=3, ago=timedelta(hours=2))
    # Its last complete run was three days ago (it rolled up every record then).
    roll_up_usage(now=timezone.now() - timedelta(days=3))

    response = client.get(URL, {"period": "7d"})

    report = response.context["report"]
    assert report_sums(report) == record_sums(old + new)
    assert report.incomplete_from == report.rolled_up_before
    # Records are read a day back: from the start of the hour 23 hours ago.
    assert (
        timedelta(hours=23) <= timezone.now() - report.live_from <= timedelta(hours=24, minutes=1)
    )
    content = response.content.decode()
    assert "The hourly rollup job is behind" in content
    assert "Not complete yet: the rollup job has not counted all of this time" in content
