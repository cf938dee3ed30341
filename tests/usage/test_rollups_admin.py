"""Staff see rollups and alert delivery in the admin, read-only, at a fixed query cost."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tests.factories import AlertFactory, CatalogModelFactory, EndUserFactory, ProviderFactory
from tests.usage.test_rollups import make_records
from usage.models import APIKeyUsageRollup, TenantUsageRollup, UsageRollup
from usage.rollups import roll_up_usage


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.mark.parametrize(
    ("model", "rows"),
    [(UsageRollup, 3 * 2), (APIKeyUsageRollup, 3), (TenantUsageRollup, 3)],
    ids=["per user", "per key", "tenant"],
)
def test_the_rollup_list_names_providers_and_models_and_is_read_only(
    staff_client, tenant, model, rows, django_assert_max_num_queries
):
    catalog_model = CatalogModelFactory(
        provider=ProviderFactory(name="Acme Upstream"), name="acme-large"
    )
    for hour in range(3):
        for _ in range(2):
            make_records(
                tenant,
                at=timezone.now() - timedelta(hours=hour),
                count=3,
                end_user=EndUserFactory(tenant=tenant),
                provider_id=catalog_model.provider_id,
                model_id=catalog_model.pk,
            )
    roll_up_usage(now=timezone.now())
    assert model.objects.count() == rows
    admin_name = f"admin:usage_{model._meta.model_name}"

    with django_assert_max_num_queries(10):
        response = staff_client.get(reverse(f"{admin_name}_changelist"))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Acme Upstream" in html
    assert "acme-large" in html
    rollup = model.objects.order_by("hour").first()
    change = staff_client.get(reverse(f"{admin_name}_change", args=[rollup.pk]))
    assert change.status_code == 200
    assert b'name="_save"' not in change.content
    assert f"{rollup.cost_usd}".encode() in change.content
    assert staff_client.get(reverse(f"{admin_name}_add")).status_code == 403


def test_the_rollup_state_page_shows_how_far_the_job_got(staff_client, tenant):
    make_records(tenant, at=timezone.now(), count=2)
    roll_up_usage(now=timezone.now())

    response = staff_client.get(reverse("admin:usage_usagerollupstate_changelist"))

    assert response.status_code == 200


def test_the_alert_list_shows_webhook_delivery(staff_client, tenant):
    now = timezone.now()
    AlertFactory(tenant=tenant, notified_at=now, webhook_delivered_at=now, webhook_attempts=1)
    AlertFactory(tenant=tenant, notified_at=now, webhook_attempts=3, webhook_error="HTTP 503")
    url = reverse("admin:usage_alert_changelist")

    html = staff_client.get(url).content.decode()
    failing = staff_client.get(url, {"webhook": "failing"})

    assert "delivered" in html
    assert "failing (3 tries)" in html
    assert failing.context["cl"].result_count == 1
