"""Tenant-scoped selectors never return another tenant's rows."""

from __future__ import annotations

import pytest

from providers import selectors as provider_selectors
from providers.choices import KeyScope
from providers.models import ProviderKey
from tenants import audit
from tenants import selectors as tenant_selectors
from tenants.models import EndUser, TenantAPIKey
from tests.factories import (
    EndUserFactory,
    MembershipFactory,
    ProviderKeyFactory,
    TenantAPIKeyFactory,
)


def test_provider_keys_are_the_tenants_own(tenant, other_tenant):
    own = ProviderKeyFactory(tenant=tenant)
    ProviderKeyFactory(tenant=other_tenant)
    ProviderKeyFactory(tenant=None, scope=KeyScope.PLATFORM)

    assert list(provider_selectors.provider_keys(tenant=tenant)) == [own]


def test_provider_keys_of_an_end_user_never_include_another_tenants_keys(tenant, other_tenant):
    end_user = EndUserFactory(tenant=tenant)
    own = ProviderKeyFactory(tenant=tenant, end_user=end_user, scope=KeyScope.USER)
    stranger = EndUserFactory(tenant=other_tenant)
    ProviderKeyFactory(tenant=other_tenant, end_user=stranger, scope=KeyScope.USER)

    assert list(provider_selectors.provider_keys(tenant=tenant, end_user=end_user)) == [own]
    # Asking with another tenant's end user still yields only this tenant's rows.
    leaked = provider_selectors.provider_keys(tenant=tenant, end_user=stranger)
    assert all(key.tenant_id == tenant.pk for key in leaked)


def test_another_tenants_provider_key_does_not_exist(tenant, other_tenant):
    theirs = ProviderKeyFactory(tenant=other_tenant)
    ours = ProviderKeyFactory(tenant=tenant)

    assert provider_selectors.get_provider_key(tenant=tenant, key_id=ours.pk) == ours
    with pytest.raises(ProviderKey.DoesNotExist):
        provider_selectors.get_provider_key(tenant=tenant, key_id=theirs.pk)


def test_api_keys_are_the_tenants_own(tenant, other_tenant):
    own = TenantAPIKeyFactory(tenant=tenant)
    theirs = TenantAPIKeyFactory(tenant=other_tenant)

    assert list(tenant_selectors.api_keys(tenant=tenant)) == [own]
    with pytest.raises(TenantAPIKey.DoesNotExist):
        tenant_selectors.get_api_key(tenant=tenant, key_id=theirs.pk)


def test_members_are_the_tenants_own(tenant, other_tenant):
    own = MembershipFactory(tenant=tenant)
    MembershipFactory(tenant=other_tenant)

    assert list(tenant_selectors.members(tenant=tenant)) == [own]


def test_end_users_are_the_tenants_own(tenant, other_tenant):
    own = EndUserFactory(tenant=tenant, external_id="alice")
    EndUserFactory(tenant=other_tenant, external_id="bob")

    assert list(tenant_selectors.end_users(tenant=tenant)) == [own]
    with pytest.raises(EndUser.DoesNotExist):
        tenant_selectors.get_end_user(tenant=tenant, external_id="bob")


def test_audit_entries_are_the_tenants_own(tenant, other_tenant):
    own = audit.record(action="tenant.updated", tenant=tenant, target=tenant)
    audit.record(action="tenant.updated", tenant=other_tenant, target=other_tenant)
    audit.record(action="catalog.imported")  # platform entry, no tenant

    assert list(tenant_selectors.audit_entries(tenant=tenant)) == [own]
