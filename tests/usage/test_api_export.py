"""GET /api/v1/usage/export.csv: raw records as streamed CSV, filtered, injection-safe."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from tenants.services import end_user_for_login
from tests.factories import (
    CatalogModelFactory,
    EndUserFactory,
    ProviderFactory,
    TenantAPIKeyFactory,
    UsageRecordFactory,
)
from usage.api.views import csv_chunks, pull_in_thread, safe_cell
from usage.choices import Outcome, PowerLevelCode

URL = "/api/v1/usage/export.csv"
MARCH = {"start": "2025-03-01", "end": "2025-03-31"}
HEADER = [
    "created_at",
    "request_id",
    "attempt",
    "end_user",
    "api_key",
    "provider",
    "model",
    "power_level",
    "outcome",
    "http_status",
    "stream",
    "estimated",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
    "error",
]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def client_for_key(key) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key.raw_key}")
    return client


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def rows_of(response) -> list[list[str]]:
    assert response.streaming
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


@pytest.fixture
def key(tenant):
    return TenantAPIKeyFactory(tenant=tenant, name="backend")


def test_the_export_streams_a_header_and_one_row_per_record_oldest_first(tenant, key):
    provider = ProviderFactory(name="Alpha")
    model = CatalogModelFactory(provider=provider, name="alpha-small")
    alice = EndUserFactory(tenant=tenant, external_id="alice")
    request_id = uuid.uuid4()
    UsageRecordFactory(
        tenant=tenant,
        created_at=at("2025-03-02T10:00"),
        request_id=request_id,
        attempt=2,
        end_user=alice,
        api_key=key,
        provider_id=provider.pk,
        model_id=model.pk,
        power_level=PowerLevelCode.BALANCED,
        outcome=Outcome.SUCCESS,
        http_status=200,
        is_stream=True,
        is_estimated=True,
        input_tokens=100,
        cached_tokens=20,
        output_tokens=30,
        cost_usd=Decimal("0.00012345"),
        latency_ms=321,
        ttft_ms=45,
    )
    UsageRecordFactory(
        tenant=tenant,
        created_at=at("2025-03-01T00:00"),
        request_id=request_id,
        provider_id=provider.pk,
        outcome=Outcome.TIMEOUT,
        input_tokens=0,
        output_tokens=0,
        cost_usd=Decimal(0),
        latency_ms=60000,
        error="upstream timed out",
    )
    UsageRecordFactory(tenant=tenant, created_at=at("2025-04-01T00:00"))  # outside the range

    response = client_for_key(key).get(URL, MARCH)

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="usage-tenant-a-2025-03-01-2025-03-31.csv"'
    )
    assert rows_of(response) == [
        HEADER,
        [
            "2025-03-01T00:00:00+00:00",
            str(request_id),
            "1",
            "",
            "",
            "Alpha",
            "",
            "Explicit model",
            "Timeout",
            "",
            "false",
            "false",
            "0",
            "0",
            "0",
            "0.00000000",
            "60000",
            "",
            "upstream timed out",
        ],
        [
            "2025-03-02T10:00:00+00:00",
            str(request_id),
            "2",
            "alice",
            f"backend ({key.prefix}…)",
            "Alpha",
            "alpha-small",
            "Balanced",
            "Success",
            "200",
            "true",
            "true",
            "100",
            "20",
            "30",
            "0.00012345",
            "321",
            "45",
            "",
        ],
    ]


def test_cells_a_spreadsheet_would_evaluate_are_neutralised(tenant):
    provider = ProviderFactory(name="-Provider")
    end_user = EndUserFactory(tenant=tenant, external_id='=HYPERLINK("http://x")')
    evil_key = TenantAPIKeyFactory(tenant=tenant, name="@SUM(A1)")
    UsageRecordFactory(
        tenant=tenant,
        created_at=at("2025-03-02T10:00"),
        end_user=end_user,
        api_key=evil_key,
        provider_id=provider.pk,
        error="+cmd|' /C calc'!A0",
    )

    row = rows_of(client_for_key(evil_key).get(URL, MARCH))[1]

    assert row[3] == '\'=HYPERLINK("http://x")'
    assert row[4].startswith("'@SUM(A1)")
    assert row[5] == "'-Provider"
    assert row[18] == "'+cmd|' /C calc'!A0"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("ok=1", "ok=1"),
        ("", ""),
        (None, ""),
    ],
)
def test_safe_cell(value, expected):
    assert safe_cell(value) == expected


def test_filters_apply_to_the_export(tenant, key):
    bob = EndUserFactory(tenant=tenant, external_id="bob")
    UsageRecordFactory(tenant=tenant, created_at=at("2025-03-02T10:00"), end_user=bob)
    UsageRecordFactory(tenant=tenant, created_at=at("2025-03-02T11:00"))

    rows = rows_of(client_for_key(key).get(URL, {**MARCH, "end_user": "bob"}))

    assert [row[3] for row in rows[1:]] == ["bob"]


def test_a_member_exports_only_their_own_usage(tenant, member):
    profile = end_user_for_login(tenant=tenant, user=member)
    UsageRecordFactory(tenant=tenant, created_at=at("2025-03-02T10:00"), end_user=profile)
    UsageRecordFactory(tenant=tenant, created_at=at("2025-03-02T11:00"))
    client = APIClient()
    client.force_login(member)

    rows = rows_of(client.get(URL, MARCH))

    assert [row[3] for row in rows[1:]] == [profile.external_id]


def test_another_tenants_records_are_not_exported(tenant, other_tenant, key):
    other_key = TenantAPIKeyFactory(tenant=other_tenant)
    UsageRecordFactory(tenant=other_tenant, created_at=at("2025-03-02T10:00"), api_key=other_key)
    UsageRecordFactory(tenant=tenant, created_at=at("2025-03-02T10:00"), api_key=key)

    mine = rows_of(client_for_key(key).get(URL, MARCH))
    filtered = rows_of(client_for_key(key).get(URL, {**MARCH, "api_key": other_key.pk}))

    assert len(mine) == 2
    assert filtered == [HEADER]


def test_errors_are_json_even_when_csv_is_asked_for(tenant, key):
    anonymous = APIClient().get(URL, HTTP_ACCEPT="text/csv")
    bad = client_for_key(key).get(URL, {"start": "nope"}, HTTP_ACCEPT="text/csv")

    assert anonymous.status_code == 401
    assert "detail" in anonymous.json()
    assert bad.status_code == 400
    assert bad.json()["detail"].startswith("start:")


def test_a_key_without_usage_read_cannot_export(tenant):
    key = TenantAPIKeyFactory(tenant=tenant, scopes=["completions"])

    assert client_for_key(key).get(URL).status_code == 403


def test_the_records_are_read_while_streaming_not_before(tenant, key):
    for hour in range(3):
        UsageRecordFactory(tenant=tenant, created_at=at(f"2025-03-02T1{hour}:00"))

    with CaptureQueriesContext(connection) as before:
        response = client_for_key(key).get(URL, MARCH)
    with CaptureQueriesContext(connection) as during:
        rows = rows_of(response)

    assert not any("usage_usagerecord" in q["sql"] for q in before.captured_queries)
    assert any("usage_usagerecord" in q["sql"] for q in during.captured_queries)
    assert len(rows) == 4


def fake_row(n: int) -> SimpleNamespace:
    return SimpleNamespace(
        created_at=at("2025-03-02T10:00"),
        request_id=uuid.UUID(int=n),
        attempt=1,
        end_user_external_id=None,
        api_key_name=None,
        api_key_prefix=None,
        provider_id=None,
        provider_name=None,
        model_id=None,
        model_name=None,
        power_level=0,
        outcome=1,
        http_status=None,
        is_stream=False,
        is_estimated=False,
        input_tokens=n,
        cached_tokens=0,
        output_tokens=0,
        cost_usd=Decimal(0),
        latency_ms=0,
        ttft_ms=None,
        error="",
    )


def test_rows_are_written_in_chunks_of_a_batch():
    chunks = list(csv_chunks(map(fake_row, range(5)), batch=2))

    assert [chunk.count("\r\n") for chunk in chunks] == [3, 2, 1]  # header + 2, 2, 1
    assert next(csv.reader(io.StringIO("".join(chunks)))) == HEADER


async def test_under_asgi_chunks_are_pulled_one_at_a_time():
    pulled = []

    def source():
        for chunk in ("a", "b", "c"):
            pulled.append(chunk)
            yield chunk

    stream = pull_in_thread(source())
    first = await anext(stream)

    assert (first, pulled) == ("a", ["a"])  # nothing read ahead
    assert [first] + [chunk async for chunk in stream] == ["a", "b", "c"]
