"""The usage admin stays cheap on a big table: estimated totals, names joined per page."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import CatalogModelFactory, ProviderFactory, UsageRecordFactory
from usage import admin as usage_admin

LIST_URL = reverse("admin:usage_usagerecord_changelist")


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_a_big_unfiltered_list_shows_the_planners_estimate_not_a_count(staff_client, monkeypatch):
    UsageRecordFactory.create_batch(3)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE usage_usagerecord")
    monkeypatch.setattr(usage_admin, "EXACT_COUNT_BELOW", 1)

    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(LIST_URL)

    assert response.status_code == 200
    assert response.context["cl"].result_count == 3
    sql = [q["sql"] for q in queries.captured_queries]
    assert not any('COUNT(*) AS "__count" FROM "usage_usagerecord"' in q for q in sql), sql


def test_a_filtered_list_counts_exactly(staff_client, monkeypatch, tenant):
    UsageRecordFactory.create_batch(2, tenant=tenant)
    UsageRecordFactory.create_batch(3)
    monkeypatch.setattr(usage_admin, "EXACT_COUNT_BELOW", 1)

    response = staff_client.get(LIST_URL, {"q": tenant.slug})

    assert response.context["cl"].result_count == 2


def test_provider_and_model_names_replace_their_ids(staff_client):
    provider = ProviderFactory(name="Acme Upstream")
    model = CatalogModelFactory(provider=provider, name="acme-large")
    UsageRecordFactory(provider_id=provider.pk, model_id=model.pk)
    UsageRecordFactory(provider_id=999_999, model_id=None)  # a provider deleted since

    html = staff_client.get(LIST_URL).content.decode()

    assert "Acme Upstream" in html
    assert "acme-large" in html
    assert "#999999" in html


def test_a_malformed_request_id_search_is_not_an_error(staff_client):
    UsageRecordFactory()

    response = staff_client.get(LIST_URL, {"q": "not-a-uuid"})

    assert response.status_code == 200
