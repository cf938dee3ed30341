"""factory-boy factories shared by every app's tests."""

from __future__ import annotations

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from providers.choices import KeyScope, KeyStatus, ProviderKind, WireProtocol
from providers.models import Provider, ProviderKey
from routing.models import CatalogModel
from tenants.models import EndUser, Membership, Plan, Tenant, TenantAPIKey

TEST_PASSWORD = "correct-horse-battery-staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", TEST_PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


def ensure_default_data() -> None:
    """Plans and routing policies come from data migrations; a transactional test's flush
    removes them, so tests that need them put them back the same way."""
    import importlib

    from django.apps import apps

    from routing.models import RoutingPolicy

    if not Plan.objects.exists():
        importlib.import_module("tenants.migrations.0002_default_plans").create_plans(apps, None)
        importlib.import_module("tenants.migrations.0004_enterprise_is_invoiced").invoiced(
            apps, None
        )
    if not RoutingPolicy.objects.exists():
        importlib.import_module("routing.migrations.0002_default_policies").create_policies(
            apps, None
        )


def plan(slug: str = "professional") -> Plan:
    ensure_default_data()
    return Plan.objects.get(slug=slug)


class TenantFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Tenant
        django_get_or_create = ("slug",)

    name = factory.Sequence(lambda n: f"Tenant {n}")
    slug = factory.Sequence(lambda n: f"tenant-{n}")
    plan = factory.LazyFunction(plan)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    tenant = factory.SubFactory(TenantFactory)
    user = factory.SubFactory(UserFactory)
    role = "member"


class EndUserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = EndUser

    tenant = factory.SubFactory(TenantFactory)
    external_id = factory.Sequence(lambda n: f"end-user-{n}")


class TenantAPIKeyFactory(factory.django.DjangoModelFactory):
    """Builds a key; the raw value is on `instance.raw_key` (tests only)."""

    class Meta:
        model = TenantAPIKey

    tenant = factory.SubFactory(TenantFactory)
    name = factory.Sequence(lambda n: f"key {n}")
    scopes = factory.LazyFunction(lambda: ["completions", "embeddings", "models", "usage:read"])

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        raw = TenantAPIKey.generate()
        obj = model_class(*args, **kwargs)
        obj.set_key(raw)
        obj.save()
        obj.raw_key = raw
        return obj


class ProviderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Provider

    name = factory.Sequence(lambda n: f"Provider {n}")
    slug = factory.Sequence(lambda n: f"provider-{n}")
    kind = ProviderKind.SIMULATOR
    protocol = WireProtocol.OPENAI
    base_url = "http://127.0.0.1:9100/v1"


class ProviderKeyFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProviderKey

    provider = factory.SubFactory(ProviderFactory)
    tenant = factory.SubFactory(TenantFactory)
    scope = KeyScope.TENANT
    status = KeyStatus.ACTIVE
    secret = factory.Sequence(lambda n: f"sk-test-secret-{n:06d}")
    last4 = factory.LazyAttribute(lambda k: k.secret[-4:])


class CatalogModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CatalogModel

    provider = factory.SubFactory(ProviderFactory)
    model_id = factory.Sequence(lambda n: f"sim-model-{n}")
    name = factory.LazyAttribute(lambda m: m.model_id)
    input_price_per_mtok = Decimal("1.00")
    output_price_per_mtok = Decimal("2.00")
    cached_input_price_per_mtok = Decimal("0.50")
    context_window = 128_000
    max_output_tokens = 4096
    supports_tools = True
    supports_json = True
    quality_score = 0.7


# --- usage, settings and audit rows (admin tests) -------------------------------------------
import uuid  # noqa: E402

from django.utils import timezone  # noqa: E402


class UsageRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "usage.UsageRecord"

    created_at = factory.LazyFunction(timezone.now)
    tenant = factory.SubFactory(TenantFactory)
    request_id = factory.LazyFunction(uuid.uuid4)
    outcome = 1  # Outcome.SUCCESS
    input_tokens = 100
    output_tokens = 20
    cost_usd = Decimal("0.00012")
    latency_ms = 250


class SpendingCapFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "usage.SpendingCap"

    tenant = factory.SubFactory(TenantFactory)
    scope = "tenant"
    amount_usd = Decimal("100.00")
    mode = "hard"


class CreditLedgerEntryFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "usage.CreditLedgerEntry"

    tenant = factory.SubFactory(TenantFactory)
    kind = "grant"
    amount_usd = Decimal("25.00")
    reason = "welcome credits"


class AlertFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "usage.Alert"

    tenant = factory.SubFactory(TenantFactory)
    kind = "spending_threshold"
    threshold = 80
    dedupe_key = factory.Sequence(lambda n: f"cap:80:2025-01:{n}")
    message = "80 % of the monthly cap is spent."


class LLMSettingsFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "routing.LLMSettings"

    tenant = factory.SubFactory(TenantFactory)
    power_level = "eco"


class AuditLogFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "tenants.AuditLog"

    tenant = factory.SubFactory(TenantFactory)
    action = "tenant.updated"
    actor_label = "system"
    changes = factory.LazyFunction(lambda: {"is_active": [True, False]})
