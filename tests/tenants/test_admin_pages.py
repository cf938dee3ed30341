"""Every registered admin renders for staff, refuses everyone else, and lists in fixed queries.

The models come from admin.site's registry, so a newly registered model is covered as is.
"""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from providers.choices import KeyScope
from providers.models import UpstreamHostAllowance
from routing.models import CatalogPriceChange, CatalogSyncRun
from tenants.models import Invitation
from tests.factories import (
    AlertFactory,
    AuditLogFactory,
    CatalogModelFactory,
    CreditLedgerEntryFactory,
    EndUserFactory,
    LLMSettingsFactory,
    MembershipFactory,
    ProviderFactory,
    ProviderKeyFactory,
    SpendingCapFactory,
    TenantAPIKeyFactory,
    TenantFactory,
    UsageRecordFactory,
    UserFactory,
)
from usage.rollups import roll_up_usage

# Session, user, counts, rows, filters, date hierarchy: what a changelist may cost at most.
MAX_CHANGELIST_QUERIES = 14

MODELS = sorted(admin.site._registry, key=lambda m: m._meta.label)
MODEL_IDS = [m._meta.label for m in MODELS]


def url_of(model, view: str) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}")


def make_rows(count: int) -> None:
    """`count` rows of every model, related the way production rows are."""
    for n in range(count):
        Group.objects.create(name=f"support {Group.objects.count()}-{n}")
        tenant = TenantFactory()
        user = UserFactory()
        MembershipFactory(tenant=tenant, user=user, role="admin")
        end_user = EndUserFactory(tenant=tenant, user=user)
        api_key = TenantAPIKeyFactory(tenant=tenant, end_user=end_user, created_by=user)
        provider = ProviderFactory()
        ProviderFactory(tenant=tenant)  # a tenant's custom endpoint
        UpstreamHostAllowance.objects.create(
            host=f"llm-{UpstreamHostAllowance.objects.count()}.internal.example"
        )
        ProviderKeyFactory(provider=provider, tenant=None, scope=KeyScope.PLATFORM)
        ProviderKeyFactory(provider=provider, tenant=tenant)
        ProviderKeyFactory(provider=provider, tenant=tenant, end_user=end_user, scope=KeyScope.USER)
        model = CatalogModelFactory(provider=provider)
        settings = LLMSettingsFactory(tenant=tenant)
        settings.preferred_providers.add(provider)
        LLMSettingsFactory(tenant=tenant, end_user=end_user)
        UsageRecordFactory(
            tenant=tenant,
            end_user=end_user,
            api_key=api_key,
            provider_id=provider.pk,
            model_id=model.pk,
        )
        SpendingCapFactory(tenant=tenant)
        SpendingCapFactory(tenant=tenant, scope="user", end_user=end_user)
        CreditLedgerEntryFactory(tenant=tenant, created_by=user)
        AlertFactory(tenant=tenant, end_user=end_user)
        AuditLogFactory(tenant=tenant, actor=user, actor_label=user.username)
        run = CatalogSyncRun.objects.create(
            started_at=timezone.now(), status="ok", diff="Nothing changed."
        )
        CatalogPriceChange.objects.create(
            catalog_model=model, sync_run=run, changed_at=timezone.now()
        )
        Invitation.objects.create(
            tenant=tenant,
            email=f"invitee{n}@example.com",
            token_hash=f"{Invitation.objects.count():064d}",
            expires_at=timezone.now(),
        )
        _beat_rows(n)
    roll_up_usage(now=timezone.now())


def _beat_rows(n: int) -> None:
    """The schedule staff edit in the admin (django-celery-beat's models)."""
    from django.utils import timezone
    from django_celery_beat.models import (
        ClockedSchedule,
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        SolarSchedule,
    )

    seq = PeriodicTask.objects.count()
    interval = IntervalSchedule.objects.create(every=60 + seq, period=IntervalSchedule.SECONDS)
    CrontabSchedule.objects.create(minute=str(seq % 60))
    SolarSchedule.objects.create(event="sunrise", latitude=seq % 90, longitude=n)
    ClockedSchedule.objects.create(clocked_time=timezone.now())
    PeriodicTask.objects.create(
        name=f"task {seq}-{n}", task="usage.roll_up_usage", interval=interval
    )


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.mark.parametrize("model", MODELS, ids=MODEL_IDS)
def test_changelist_renders_for_staff(staff_client, model, django_assert_max_num_queries):
    make_rows(3)
    with django_assert_max_num_queries(MAX_CHANGELIST_QUERIES):
        response = staff_client.get(url_of(model, "changelist"))
    assert response.status_code == 200


@pytest.mark.parametrize("model", MODELS, ids=MODEL_IDS)
def test_changelist_queries_do_not_grow_with_rows(staff_client, model):
    make_rows(2)
    url = url_of(model, "changelist")
    with CaptureQueriesContext(connection) as few:
        assert staff_client.get(url).status_code == 200
    make_rows(4)
    with CaptureQueriesContext(connection) as many:
        assert staff_client.get(url).status_code == 200
    assert len(many) <= len(few), [q["sql"] for q in many.captured_queries]


@pytest.mark.parametrize("model", MODELS, ids=MODEL_IDS)
def test_add_page_renders_for_staff_or_is_refused_for_read_only_models(
    staff_client, rf, staff_user, model
):
    make_rows(1)
    request = rf.get("/")
    request.user = staff_user
    can_add = admin.site._registry[model].has_add_permission(request)
    response = staff_client.get(url_of(model, "add"))
    assert response.status_code == (200 if can_add else 403)


@pytest.mark.parametrize("model", MODELS, ids=MODEL_IDS)
def test_change_page_renders_for_staff(staff_client, model):
    make_rows(1)
    obj = model._default_manager.order_by("pk").first()
    assert obj is not None, f"make_rows builds no {model._meta.label}"
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])
    assert staff_client.get(url).status_code == 200


@pytest.mark.parametrize("model", MODELS, ids=MODEL_IDS)
@pytest.mark.parametrize("view", ["changelist", "add"])
def test_non_staff_user_is_sent_to_the_login_page(client, member, model, view):
    client.force_login(member)
    response = client.get(url_of(model, view))
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


@pytest.mark.parametrize("model", MODELS, ids=MODEL_IDS)
@pytest.mark.parametrize("view", ["changelist", "add"])
def test_anonymous_visitor_is_sent_to_the_login_page(client, db, model, view):
    response = client.get(url_of(model, view))
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))


def test_read_only_admins_cannot_be_written_to(rf, staff_user):
    from tenants.models import AuditLog
    from usage.models import UsageRecord

    request = rf.get("/")
    request.user = staff_user
    for model in (UsageRecord, AuditLog):
        model_admin = admin.site._registry[model]
        assert model_admin.has_view_permission(request)
        assert not model_admin.has_add_permission(request)
        assert not model_admin.has_change_permission(request)
        assert not model_admin.has_delete_permission(request)
