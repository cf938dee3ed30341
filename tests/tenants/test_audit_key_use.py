"""The router's use of provider keys, sampled: at most one `provider_key.used` entry per key
per hour, whichever process sees the use first, never one per request."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from tenants import audit
from tenants.models import AuditLog
from tests.factories import ProviderKeyFactory, TenantFactory, ensure_default_data


def used_entries(key=None):
    entries = AuditLog.objects.filter(action=audit.KEY_USED)
    return entries.filter(target_id=str(key.pk)) if key is not None else entries


def test_a_batch_of_many_uses_writes_one_entry_per_key(tenant):
    first, second = ProviderKeyFactory(tenant=tenant), ProviderKeyFactory(tenant=tenant)
    uses = [(tenant.pk, first.pk)] * 40 + [(tenant.pk, second.pk)] * 3 + [(tenant.pk, None)]

    written = audit.record_keys_used(uses, timezone.now())

    assert written == 2
    entry = used_entries(first).get()
    assert (entry.tenant_id, entry.actor_label, entry.target_type) == (
        tenant.pk,
        "router",
        "providers.providerkey",
    )
    assert entry.changes == {"uses_in_batch": 40}
    assert entry.target_repr.endswith(f"…{first.last4} (Tenant)")
    assert first.reveal_secret() not in entry.target_repr


def test_uses_within_the_hour_write_nothing_more_and_the_next_hour_writes_again(tenant):
    key = ProviderKeyFactory(tenant=tenant)
    now = timezone.now()

    audit.record_keys_used([(tenant.pk, key.pk)], now)
    later = [
        audit.record_keys_used([(tenant.pk, key.pk)], now + timedelta(minutes=m)) for m in (1, 59)
    ]
    next_hour = audit.record_keys_used([(tenant.pk, key.pk)], now + timedelta(minutes=61))

    assert later == [0, 0]
    assert next_hour == 1
    assert list(used_entries(key).order_by("created_at").values_list("created_at", flat=True)) == [
        now,
        now + timedelta(minutes=61),
    ]


def test_a_platform_keys_use_goes_to_no_tenants_log(tenant):
    key = ProviderKeyFactory(tenant=None, scope="platform")

    audit.record_keys_used([(tenant.pk, key.pk)], timezone.now())

    assert used_entries(key).get().tenant_id is None


def test_a_key_deleted_since_is_skipped(tenant):
    key = ProviderKeyFactory(tenant=tenant)
    key_id = key.pk
    key.delete()

    assert audit.record_keys_used([(tenant.pk, key_id)], timezone.now()) == 0
    assert not used_entries().exists()


def test_an_empty_batch_asks_the_database_nothing(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert audit.record_keys_used([], timezone.now()) == 0


def test_a_batch_costs_a_fixed_number_of_queries(tenant, django_assert_max_num_queries):
    keys = [ProviderKeyFactory(tenant=tenant) for _ in range(5)]

    # savepoint, lock, recent entries, the keys, the insert, release
    with django_assert_max_num_queries(6):
        audit.record_keys_used([(tenant.pk, k.pk) for k in keys], timezone.now())

    assert used_entries().count() == 5


@pytest.mark.django_db(transaction=True)
def test_writers_in_parallel_write_one_entry_per_key():
    """Eight usage writers flush the same key at the same moment (own connections, as
    separate processes would): the lock makes the check-then-insert one at a time."""
    ensure_default_data()
    tenant = TenantFactory()
    key = ProviderKeyFactory(tenant=tenant)
    now = timezone.now()
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def flush() -> None:
        try:
            start.wait()
            audit.record_keys_used([(tenant.pk, key.pk)], now)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=flush) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert used_entries(key).count() == 1
