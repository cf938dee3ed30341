"""The database refuses rows that break the named constraints, whatever code wrote them."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from providers.choices import KeyScope
from providers.models import ProviderKey
from routing.models import CatalogModel, LLMSettings
from tenants.models import EndUser, Membership, Tenant
from tests.factories import (
    AlertFactory,
    CatalogModelFactory,
    EndUserFactory,
    LLMSettingsFactory,
    MembershipFactory,
    ProviderFactory,
    SpendingCapFactory,
    UserFactory,
    plan,
)
from usage.models import Alert, SpendingCap


def refused(create) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        create()


def provider_key(**fields) -> ProviderKey:
    key = ProviderKey(provider=ProviderFactory(), **fields)
    key.set_secret("sk-constraint-test")
    key.save()
    return key


@pytest.mark.parametrize(
    ("scope", "with_tenant", "with_end_user"),
    [
        (KeyScope.PLATFORM, True, False),
        (KeyScope.PLATFORM, False, True),
        (KeyScope.TENANT, False, False),
        (KeyScope.TENANT, True, True),
        (KeyScope.USER, True, False),
        (KeyScope.USER, False, True),
    ],
)
def test_a_provider_key_scope_must_match_its_owner(tenant, scope, with_tenant, with_end_user):
    end_user = EndUserFactory(tenant=tenant)
    refused(
        lambda: provider_key(
            scope=scope,
            tenant=tenant if with_tenant else None,
            end_user=end_user if with_end_user else None,
        )
    )


@pytest.mark.parametrize(
    ("scope", "with_tenant", "with_end_user"),
    [
        (KeyScope.PLATFORM, False, False),
        (KeyScope.TENANT, True, False),
        (KeyScope.USER, True, True),
    ],
)
def test_a_provider_key_with_a_matching_owner_is_stored(tenant, scope, with_tenant, with_end_user):
    end_user = EndUserFactory(tenant=tenant)
    key = provider_key(
        scope=scope,
        tenant=tenant if with_tenant else None,
        end_user=end_user if with_end_user else None,
    )
    assert key.pk is not None


def test_a_user_has_one_membership_per_tenant(tenant, other_tenant):
    membership = MembershipFactory(tenant=tenant)
    MembershipFactory(tenant=other_tenant, user=membership.user)  # another tenant is fine

    refused(lambda: Membership.objects.create(tenant=tenant, user=membership.user, role="viewer"))


def test_an_end_user_external_id_is_unique_per_tenant(tenant, other_tenant):
    EndUserFactory(tenant=tenant, external_id="alice")
    EndUserFactory(tenant=other_tenant, external_id="alice")  # another tenant is fine

    refused(lambda: EndUser.objects.create(tenant=tenant, external_id="alice"))


def test_a_login_user_has_one_end_user_profile_per_tenant(tenant):
    user = UserFactory()
    EndUserFactory(tenant=tenant, user=user)
    EndUserFactory(tenant=tenant)  # profiles without a login user do not collide

    refused(lambda: EndUser.objects.create(tenant=tenant, external_id="again", user=user))


def test_a_tenant_has_one_tenant_level_llm_settings(tenant):
    LLMSettingsFactory(tenant=tenant)

    refused(lambda: LLMSettings.objects.create(tenant=tenant))


def test_an_end_user_has_one_llm_settings(tenant):
    end_user = EndUserFactory(tenant=tenant)
    LLMSettingsFactory(tenant=tenant, end_user=end_user)

    refused(lambda: LLMSettings.objects.create(tenant=tenant, end_user=end_user))


def test_end_user_llm_settings_need_the_tenant(tenant):
    end_user = EndUserFactory(tenant=tenant)

    refused(lambda: LLMSettings.objects.create(tenant=None, end_user=end_user))


def test_a_one_user_spending_cap_needs_its_end_user(tenant):
    refused(lambda: SpendingCap.objects.create(tenant=tenant, scope="user", amount_usd=Decimal(5)))


def test_a_tenant_wide_spending_cap_names_no_end_user(tenant):
    end_user = EndUserFactory(tenant=tenant)

    refused(
        lambda: SpendingCap.objects.create(
            tenant=tenant, scope="tenant", end_user=end_user, amount_usd=Decimal(5)
        )
    )


@pytest.mark.parametrize("scope", ["tenant", "each_user"])
def test_a_tenant_has_one_cap_per_scope(tenant, scope):
    SpendingCapFactory(tenant=tenant, scope=scope)

    refused(lambda: SpendingCap.objects.create(tenant=tenant, scope=scope, amount_usd=Decimal(1)))


def test_an_end_user_has_one_spending_cap(tenant):
    end_user = EndUserFactory(tenant=tenant)
    SpendingCapFactory(tenant=tenant, scope="user", end_user=end_user)

    refused(
        lambda: SpendingCap.objects.create(
            tenant=tenant, scope="user", end_user=end_user, amount_usd=Decimal(1)
        )
    )


def test_an_alert_is_raised_once_per_dedupe_key(tenant, other_tenant):
    AlertFactory(tenant=tenant, dedupe_key="cap:80:2025-06")
    AlertFactory(tenant=other_tenant, dedupe_key="cap:80:2025-06")  # another tenant is fine

    refused(
        lambda: Alert.objects.create(
            tenant=tenant, kind="spending_threshold", dedupe_key="cap:80:2025-06", message="x"
        )
    )


def test_a_provider_lists_a_model_id_once(db):
    model = CatalogModelFactory()

    refused(
        lambda: CatalogModel.objects.create(
            provider=model.provider, model_id=model.model_id, name="dup"
        )
    )


@pytest.mark.parametrize("day", [0, 29])
def test_a_billing_day_is_between_1_and_28(db, day):
    refused(
        lambda: Tenant.objects.create(name="T", slug=f"t-day-{day}", plan=plan(), billing_day=day)
    )
