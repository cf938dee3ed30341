"""The audit log names who acted: a login user (linked), an API key (labelled), or the system."""

from tenants import audit
from tenants.api.views import APIKeyActor
from tests.factories import TenantAPIKeyFactory


def test_an_api_key_caller_is_labelled_by_its_prefix_not_linked_as_a_user(tenant):
    key = TenantAPIKeyFactory(tenant=tenant)

    entry = audit.record(action="api_key.created", actor=APIKeyActor(key), tenant=tenant)

    assert entry.actor is None
    assert entry.actor_label == f"api-key:{key.prefix}"
    assert key.raw_key not in entry.actor_label


def test_a_login_user_is_linked_and_no_actor_is_the_system(tenant, owner):
    assert audit.record(action="x", actor=owner, tenant=tenant).actor == owner
    assert audit.record(action="x", tenant=tenant).actor_label == "system"
