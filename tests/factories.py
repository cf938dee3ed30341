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


def plan(slug: str = "professional") -> Plan:
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
