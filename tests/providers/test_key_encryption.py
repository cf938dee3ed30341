"""Provider secrets at rest: encrypted, readable across key rotation, never leaked in errors."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from providers.models import ProviderKey
from tenants import crypto
from tenants.models import AuditLog
from tests.factories import ProviderKeyFactory

PLAINTEXT = "sk-live-rotation-test-5e7d"
OLD_KEY = Fernet.generate_key().decode()
NEW_KEY = Fernet.generate_key().decode()
STRANGER_KEY = Fernet.generate_key().decode()


def raw_secret(key_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM providers_providerkey WHERE id = %s", [key_id])
        return cursor.fetchone()[0]


def reload(key: ProviderKey) -> ProviderKey:
    return ProviderKey.objects.get(pk=key.pk)


def rotate(*args: str) -> str:
    out = StringIO()
    call_command("rotate_encryption_keys", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def old_key_secret(tenant):
    """A key stored while OLD_KEY was the only encryption key."""
    with override_settings(SWITCHYARD_ENCRYPTION_KEYS=[OLD_KEY]):
        return ProviderKeyFactory(tenant=tenant, secret=PLAINTEXT)


def test_a_secret_round_trips_and_is_not_stored_in_plaintext(tenant):
    key = ProviderKeyFactory(tenant=tenant, secret=PLAINTEXT)

    raw = raw_secret(key.pk)
    assert PLAINTEXT not in raw
    assert reload(key).reveal_secret() == PLAINTEXT
    assert str(reload(key).secret) == crypto.MASK


def test_a_secret_under_the_old_key_decrypts_while_the_old_key_is_second(old_key_secret):
    with override_settings(SWITCHYARD_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        assert reload(old_key_secret).reveal_secret() == PLAINTEXT


def test_rotation_re_encrypts_so_that_only_the_new_key_is_needed(old_key_secret, tenant):
    before = raw_secret(old_key_secret.pk)
    with override_settings(SWITCHYARD_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        output = rotate()
        assert "providers.ProviderKey.secret: re-encrypted 1" in output
        assert "Re-encrypted 1 secret(s)." in output

    assert raw_secret(old_key_secret.pk) != before
    with override_settings(SWITCHYARD_ENCRYPTION_KEYS=[NEW_KEY]):
        assert reload(old_key_secret).reveal_secret() == PLAINTEXT
    assert AuditLog.objects.filter(action="encryption_keys.rotated").exists()


def test_rotation_leaves_secrets_already_under_the_newest_key_alone(old_key_secret, tenant):
    with override_settings(SWITCHYARD_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        current = ProviderKeyFactory(tenant=tenant, secret="sk-already-new-0001")
        untouched = raw_secret(current.pk)

        assert "Re-encrypted 1 secret(s)." in rotate()
        assert raw_secret(current.pk) == untouched
        assert "Re-encrypted 0 secret(s)." in rotate()


def test_a_dry_run_counts_but_writes_nothing(old_key_secret):
    before = raw_secret(old_key_secret.pk)
    with override_settings(SWITCHYARD_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        output = rotate("--dry-run")

    assert "would re-encrypt 1" in output
    assert raw_secret(old_key_secret.pk) == before
    assert not AuditLog.objects.filter(action="encryption_keys.rotated").exists()


def test_rotation_works_in_batches(tenant):
    with override_settings(SWITCHYARD_ENCRYPTION_KEYS=[OLD_KEY]):
        keys = ProviderKeyFactory.create_batch(5, tenant=tenant)
    with override_settings(SWITCHYARD_ENCRYPTION_KEYS=[NEW_KEY, OLD_KEY]):
        assert "Re-encrypted 5 secret(s)." in rotate("--batch-size", "2")
    with override_settings(SWITCHYARD_ENCRYPTION_KEYS=[NEW_KEY]):
        for key in keys:
            reload(key).reveal_secret()  # raises if any was missed


def test_a_secret_no_key_opens_is_reported_not_lost(old_key_secret):
    before = raw_secret(old_key_secret.pk)
    with (
        override_settings(SWITCHYARD_ENCRYPTION_KEYS=[NEW_KEY]),
        pytest.raises(CommandError, match="could not be decrypted"),
    ):
        rotate()
    assert raw_secret(old_key_secret.pk) == before


def test_a_wrong_key_raises_decryption_error_without_plaintext_or_ciphertext(old_key_secret):
    ciphertext = raw_secret(old_key_secret.pk)
    with override_settings(SWITCHYARD_ENCRYPTION_KEYS=[STRANGER_KEY]):
        key = reload(old_key_secret)
        with pytest.raises(crypto.DecryptionError) as caught:
            key.reveal_secret()

    message = str(caught.value)
    assert PLAINTEXT not in message
    assert ciphertext not in message
    assert ciphertext[:16] not in message
    assert ciphertext not in repr(caught.value)
