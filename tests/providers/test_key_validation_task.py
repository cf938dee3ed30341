"""A key added (or replaced) is checked in the background with a 5-token request; a key the
provider refuses leaves routing and its owner is alerted, once."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from providers import services, tasks
from providers.choices import KeyScope, KeyStatus
from providers.models import ProviderKey
from tests.factories import (
    CatalogModelFactory,
    EndUserFactory,
    ProviderFactory,
    ProviderKeyFactory,
    TenantFactory,
)
from usage.models import Alert


@pytest.fixture
def provider(sim, transactional_db):
    provider = ProviderFactory(slug="sim", name="Sim", base_url=f"{sim.url}/v1")
    # The cheapest enabled chat model is the one the check asks for.
    CatalogModelFactory(
        provider=provider,
        model_id="sim-balanced",
        input_price_per_mtok=Decimal("1"),
        output_price_per_mtok=Decimal("4"),
    )
    CatalogModelFactory(
        provider=provider,
        model_id="sim-eco",
        input_price_per_mtok=Decimal("0.1"),
        output_price_per_mtok=Decimal("0.4"),
    )
    CatalogModelFactory(
        provider=provider,
        model_id="sim-embed",
        mode="embedding",
        input_price_per_mtok=Decimal("0.01"),
        output_price_per_mtok=Decimal("0"),
    )
    return provider


@pytest.fixture
def tenant(transactional_db):
    return TenantFactory(slug="acme", name="Acme")


def wait_for_status(key: ProviderKey, *, leaving: str, timeout: float = 30) -> ProviderKey:
    deadline = time.monotonic() + timeout
    while True:
        key.refresh_from_db()
        if key.status != leaving:
            return key
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker did not validate {key}")
        time.sleep(0.1)


def test_a_key_added_with_a_worker_running_becomes_active(
    sim, provider, tenant, celery_worker_process
):
    celery_worker_process(name="keys")

    key = services.add_provider_key(provider=provider, tenant=tenant, secret="sim-good-key-0042")

    assert key.status == KeyStatus.PENDING
    key = wait_for_status(key, leaving=KeyStatus.PENDING)
    assert key.status == KeyStatus.ACTIVE
    assert key.last_validated_at is not None
    [call] = [e for e in sim.log if e["api_key"] == "sim-good-key-0042"]
    assert call["path"] == "/v1/chat/completions"
    assert call["model"] == "sim-eco"
    assert call["completion_tokens"] <= tasks.validation.VALIDATION_MAX_TOKENS
    assert not Alert.objects.exists()


def test_a_refused_key_becomes_invalid_and_its_tenant_is_alerted(
    sim, provider, tenant, celery_worker_process
):
    celery_worker_process(name="keys")
    secret = "sim-bad-tenant-key-9999"

    key = services.add_provider_key(provider=provider, tenant=tenant, secret=secret)

    key = wait_for_status(key, leaving=KeyStatus.PENDING)
    assert key.status == KeyStatus.INVALID
    assert "401" in key.last_error
    alert = Alert.objects.get(tenant=tenant)
    assert alert.kind == "key_invalid"
    assert "••••9999" in alert.message
    for text in (key.last_error, alert.message):
        assert secret not in text


def test_a_replaced_secret_is_validated_again(sim, provider, tenant, celery_worker_process):
    key = ProviderKeyFactory(
        provider=provider, tenant=tenant, secret="sim-bad-old-key-0001", status=KeyStatus.INVALID
    )
    celery_worker_process(name="keys")

    services.replace_provider_key_secret(key=key, secret="sim-new-good-key-0002")

    assert wait_for_status(key, leaving=KeyStatus.PENDING).status == KeyStatus.ACTIVE


def test_validating_twice_raises_one_alert(sim, provider, tenant):
    end_user = EndUserFactory(tenant=tenant)
    key = ProviderKeyFactory(
        provider=provider,
        tenant=tenant,
        end_user=end_user,
        scope=KeyScope.USER,
        secret="sim-bad-user-key-7777",
        status=KeyStatus.PENDING,
    )

    assert tasks.validate_provider_key(key.pk) == KeyStatus.INVALID
    assert tasks.validate_provider_key(key.pk) is None

    alert = Alert.objects.get()
    assert (alert.tenant, alert.end_user) == (tenant, end_user)
    key.refresh_from_db()
    assert key.status == KeyStatus.INVALID


def test_a_platform_key_found_invalid_alerts_no_tenant(sim, provider):
    key = ProviderKeyFactory(
        provider=provider,
        tenant=None,
        scope=KeyScope.PLATFORM,
        secret="sim-bad-platform-key-1111",
        status=KeyStatus.ACTIVE,
    )

    assert tasks.validate_provider_key(key.pk) == KeyStatus.INVALID
    assert not Alert.objects.exists()


def test_a_provider_that_does_not_answer_leaves_the_key_alone_and_retries(sim, tenant):
    down = ProviderFactory(slug="down", base_url=f"{sim.url}/fault/503/v1")
    key = ProviderKeyFactory(provider=down, tenant=tenant, status=KeyStatus.ACTIVE)

    # Called directly, Celery's autoretry re-raises instead of scheduling the retry.
    with pytest.raises(tasks.ProviderUnavailableError):
        tasks.validate_provider_key(key.pk)

    key.refresh_from_db()
    assert key.status == KeyStatus.ACTIVE
    assert key.last_validated_at is None
    assert not Alert.objects.exists()


def test_without_a_chat_model_the_models_list_decides(sim, tenant):
    bare = ProviderFactory(slug="bare", base_url=f"{sim.url}/v1")
    key = ProviderKeyFactory(provider=bare, tenant=tenant, status=KeyStatus.PENDING)

    assert tasks.validate_provider_key(key.pk) == KeyStatus.ACTIVE
    assert [e["path"] for e in sim.log] == ["/v1/models"]


def test_a_check_of_a_secret_since_replaced_is_dropped(sim, provider, tenant):
    key = ProviderKeyFactory(provider=provider, tenant=tenant, status=KeyStatus.PENDING)

    settled = services.settle_key_validation(
        key_id=key.pk,
        secret="sk-the-secret-before-the-replace",
        ok=False,
        error="The provider rejected this key (401).",
        now=key.created_at,
    )

    assert settled is None
    key.refresh_from_db()
    assert key.status == KeyStatus.PENDING


def test_the_daily_run_queues_every_usable_key(sim, provider, tenant, monkeypatch):
    usable = [
        ProviderKeyFactory(provider=provider, tenant=tenant, status=KeyStatus.ACTIVE),
        ProviderKeyFactory(provider=provider, tenant=tenant, status=KeyStatus.PENDING),
    ]
    ProviderKeyFactory(provider=provider, tenant=tenant, status=KeyStatus.INVALID)
    ProviderKeyFactory(provider=provider, tenant=tenant, is_enabled=False)
    ProviderKeyFactory(provider=ProviderFactory(is_enabled=False), tenant=tenant)
    queued: list[int] = []
    monkeypatch.setattr(tasks.validate_provider_key, "delay", queued.append)

    assert tasks.validate_active_keys() == 2
    assert queued == [k.pk for k in usable]


def test_a_broker_outage_does_not_fail_adding_a_key(
    provider, tenant, monkeypatch, django_capture_on_commit_callbacks
):
    from kombu.exceptions import OperationalError

    def unreachable(key_id):
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(tasks.validate_provider_key, "delay", unreachable)

    with django_capture_on_commit_callbacks(execute=True):
        key = services.add_provider_key(provider=provider, tenant=tenant, secret="sk-later-0001")

    key.refresh_from_db()
    assert key.status == KeyStatus.PENDING  # the daily run will check it
