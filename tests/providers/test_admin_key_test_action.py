"""The admin's "Test key" action: a live check against the simulator, recorded and reported."""

from __future__ import annotations

import pytest
from django.urls import reverse

from providers.admin import KEY_TEST_LIMIT
from providers.choices import KeyStatus, ProviderKind, WireProtocol
from providers.models import ProviderKey
from tenants.models import AuditLog
from tests.factories import ProviderFactory, ProviderKeyFactory

LIST_URL = reverse("admin:providers_providerkey_changelist")
BAD_SECRET = "sim-bad-key-0bad"  # the simulator answers 401 to keys with this prefix


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


@pytest.fixture
def sim_provider(sim):
    return ProviderFactory(
        kind=ProviderKind.SIMULATOR, protocol=WireProtocol.OPENAI, base_url=f"{sim.url}/v1"
    )


def run_test_action(staff_client, keys):
    response = staff_client.post(
        LIST_URL,
        {"action": "test_keys", "_selected_action": [k.pk for k in keys]},
        follow=True,
    )
    return [str(m) for m in response.context["messages"]]


def test_a_working_key_becomes_active_and_the_check_is_audited(
    staff_client, staff_user, tenant, sim_provider, sim
):
    key = ProviderKeyFactory(
        provider=sim_provider, tenant=tenant, secret="sk-sim-good-0001", status=KeyStatus.PENDING
    )

    messages = run_test_action(staff_client, [key])

    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE
    assert key.last_validated_at is not None
    assert any("works" in m for m in messages), messages
    entry = AuditLog.objects.get(action="provider_key.validated")
    assert entry.actor == staff_user
    assert sim.log[-1]["api_key"] == "sk-sim-good-0001"


def test_a_rejected_key_becomes_invalid_and_the_message_never_shows_it(
    staff_client, tenant, sim_provider
):
    key = ProviderKeyFactory(provider=sim_provider, tenant=tenant, secret=BAD_SECRET)

    messages = run_test_action(staff_client, [key])

    key.refresh_from_db()
    assert key.status == KeyStatus.INVALID
    assert "401" in key.last_error
    assert any("failed" in m for m in messages), messages
    assert not any(BAD_SECRET in m for m in messages)
    assert BAD_SECRET not in key.last_error
    assert AuditLog.objects.filter(action="provider_key.validation_failed").exists()


def test_testing_too_many_keys_at_once_is_refused(staff_client, tenant, sim_provider):
    keys = ProviderKeyFactory.create_batch(
        KEY_TEST_LIMIT + 1, provider=sim_provider, tenant=tenant, status=KeyStatus.PENDING
    )

    messages = run_test_action(staff_client, keys)

    assert any(f"at most {KEY_TEST_LIMIT}" in m for m in messages), messages
    assert not ProviderKey.objects.exclude(status=KeyStatus.PENDING).exists()
