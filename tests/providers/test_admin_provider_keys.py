"""Provider keys in the admin: write-only secrets, stored encrypted, changed only via services."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.test import override_settings
from django.urls import reverse

from providers.choices import KeyScope, KeyStatus
from providers.models import ProviderKey
from tenants import config_version, crypto
from tenants.models import AuditLog
from tests.factories import EndUserFactory, ProviderFactory, ProviderKeyFactory
from tests.tenants.admin_forms import changeform_data

PLAINTEXT = "sk-live-admin-test-7f3a9c"
ADD_URL = reverse("admin:providers_providerkey_add")
LIST_URL = reverse("admin:providers_providerkey_changelist")


def change_url(key: ProviderKey) -> str:
    return reverse("admin:providers_providerkey_change", args=[key.pk])


def raw_secret(key_id: int) -> str:
    """The stored column, read past the ORM's field conversion."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret FROM providers_providerkey WHERE id = %s", [key_id])
        return cursor.fetchone()[0]


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def add_key(staff_client, django_capture_on_commit_callbacks, **fields):
    data = {"label": "primary", "new_secret": PLAINTEXT, "is_enabled": "on", **fields}
    with django_capture_on_commit_callbacks(execute=True):
        return staff_client.post(ADD_URL, data)


def test_adding_a_key_stores_it_encrypted_audited_and_bumps_config(
    staff_client, staff_user, tenant, django_capture_on_commit_callbacks
):
    provider = ProviderFactory()
    assert config_version.read_sync() == "0"

    response = add_key(
        staff_client, django_capture_on_commit_callbacks, provider=provider.pk, tenant=tenant.pk
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    key = ProviderKey.objects.get(provider=provider)
    assert (key.scope, key.tenant, key.status) == (KeyScope.TENANT, tenant, KeyStatus.PENDING)
    raw = raw_secret(key.pk)
    assert raw != PLAINTEXT
    assert PLAINTEXT not in raw
    assert crypto.decrypt(raw) == PLAINTEXT
    assert key.last4 == PLAINTEXT[-4:]
    entry = AuditLog.objects.get(action="provider_key.added")
    assert (entry.actor, entry.tenant, entry.target_id) == (staff_user, tenant, str(key.pk))
    assert PLAINTEXT not in str(entry.changes)
    assert config_version.read_sync() != "0"


def test_a_key_for_an_end_user_takes_the_end_users_tenant(
    staff_client, tenant, django_capture_on_commit_callbacks
):
    end_user = EndUserFactory(tenant=tenant)
    provider = ProviderFactory()

    add_key(
        staff_client, django_capture_on_commit_callbacks, provider=provider.pk, end_user=end_user.pk
    )

    key = ProviderKey.objects.get(provider=provider)
    assert (key.scope, key.tenant, key.end_user) == (KeyScope.USER, tenant, end_user)


def test_a_key_without_tenant_is_a_platform_key(staff_client, django_capture_on_commit_callbacks):
    provider = ProviderFactory()

    add_key(staff_client, django_capture_on_commit_callbacks, provider=provider.pk)

    assert ProviderKey.objects.get(provider=provider).scope == KeyScope.PLATFORM


def test_adding_a_key_requires_a_secret(staff_client, tenant, django_capture_on_commit_callbacks):
    provider = ProviderFactory()

    response = add_key(
        staff_client,
        django_capture_on_commit_callbacks,
        provider=provider.pk,
        tenant=tenant.pk,
        new_secret="",
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["new_secret"]
    assert not ProviderKey.objects.exists()


def test_an_end_user_of_another_tenant_is_refused(
    staff_client, tenant, other_tenant, django_capture_on_commit_callbacks
):
    provider = ProviderFactory()
    stranger = EndUserFactory(tenant=other_tenant)

    response = add_key(
        staff_client,
        django_capture_on_commit_callbacks,
        provider=provider.pk,
        tenant=tenant.pk,
        end_user=stranger.pk,
    )

    assert response.status_code == 200
    assert "end_user" in response.context["adminform"].form.errors
    assert not ProviderKey.objects.exists()


def test_pages_show_the_mask_never_the_plaintext_or_ciphertext(staff_client, tenant):
    key = ProviderKeyFactory(tenant=tenant, secret=PLAINTEXT)
    ciphertext = raw_secret(key.pk)

    for url in (LIST_URL, change_url(key), f"{LIST_URL}?q={PLAINTEXT[-4:]}"):
        html = staff_client.get(url).content.decode()
        assert PLAINTEXT not in html, url
        assert ciphertext not in html, url
        assert ciphertext[:20] not in html, url
        assert key.masked in html, url


def test_a_rejected_form_does_not_echo_the_secret(staff_client, other_tenant, tenant):
    provider = ProviderFactory()
    stranger = EndUserFactory(tenant=other_tenant)

    response = staff_client.post(
        ADD_URL,
        {
            "provider": provider.pk,
            "tenant": tenant.pk,
            "end_user": stranger.pk,
            "new_secret": PLAINTEXT,
        },
    )

    assert response.status_code == 200
    assert PLAINTEXT not in response.content.decode()


def test_a_blank_secret_on_change_keeps_the_stored_key(
    staff_client, staff_user, tenant, django_capture_on_commit_callbacks
):
    key = ProviderKeyFactory(tenant=tenant, secret=PLAINTEXT, label="old label")
    before = raw_secret(key.pk)
    page = staff_client.get(change_url(key))
    data = changeform_data(page, label="new label", new_secret="")

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(change_url(key), data)

    assert response.status_code == 302, response.content.decode()[:2000]
    key.refresh_from_db()
    assert key.label == "new label"
    assert raw_secret(key.pk) == before
    assert key.reveal_secret() == PLAINTEXT
    assert key.status == KeyStatus.ACTIVE
    entry = AuditLog.objects.get(action="provider_key.renamed")
    assert entry.actor == staff_user
    assert entry.changes == {"label": ["old label", "new label"]}
    assert not AuditLog.objects.filter(action="provider_key.replaced").exists()


def test_a_new_secret_on_change_replaces_the_key_through_the_service(
    staff_client, staff_user, tenant, django_capture_on_commit_callbacks
):
    key = ProviderKeyFactory(tenant=tenant, secret=PLAINTEXT)
    replacement = "sk-live-replacement-0042"
    data = changeform_data(staff_client.get(change_url(key)), new_secret=replacement)

    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(change_url(key), data)

    key.refresh_from_db()
    assert crypto.decrypt(raw_secret(key.pk)) == replacement
    assert (key.last4, key.status) == ("0042", KeyStatus.PENDING)
    entry = AuditLog.objects.get(action="provider_key.replaced")
    assert entry.actor == staff_user
    assert replacement not in str(entry.changes)
    assert PLAINTEXT not in str(entry.changes)
    assert config_version.read_sync() != "0"


def test_unticking_enabled_on_change_disables_the_key_audited(
    staff_client, tenant, django_capture_on_commit_callbacks
):
    key = ProviderKeyFactory(tenant=tenant)
    data = changeform_data(staff_client.get(change_url(key)), is_enabled=None)

    with django_capture_on_commit_callbacks(execute=True):
        staff_client.post(change_url(key), data)

    key.refresh_from_db()
    assert not key.is_enabled
    assert AuditLog.objects.filter(action="provider_key.disabled", target_id=str(key.pk)).exists()


def test_disable_and_enable_actions_go_through_the_service(staff_client, tenant):
    keys = ProviderKeyFactory.create_batch(2, tenant=tenant)
    ids = [k.pk for k in keys]

    staff_client.post(LIST_URL, {"action": "disable_keys", "_selected_action": ids})
    assert not ProviderKey.objects.filter(pk__in=ids, is_enabled=True).exists()
    assert AuditLog.objects.filter(action="provider_key.disabled").count() == 2

    staff_client.post(LIST_URL, {"action": "enable_keys", "_selected_action": ids})
    assert ProviderKey.objects.filter(pk__in=ids, is_enabled=True).count() == 2
    assert AuditLog.objects.filter(action="provider_key.enabled").count() == 2


def test_deleting_a_key_is_audited_with_its_mask_only(staff_client, staff_user, tenant):
    key = ProviderKeyFactory(tenant=tenant, secret=PLAINTEXT)
    url = reverse("admin:providers_providerkey_delete", args=[key.pk])

    response = staff_client.post(url, {"post": "yes"})

    assert response.status_code == 302
    assert not ProviderKey.objects.filter(pk=key.pk).exists()
    entry = AuditLog.objects.get(action="provider_key.deleted")
    assert entry.actor == staff_user
    assert entry.changes == {"key": key.masked}


def test_reencrypt_action_rotates_every_secret_to_the_newest_key(staff_client, tenant):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with override_settings(SWITCHYARD_ENCRYPTION_KEYS=[old]):
        selected, unselected = ProviderKeyFactory.create_batch(2, tenant=tenant, secret=PLAINTEXT)

    with override_settings(SWITCHYARD_ENCRYPTION_KEYS=[new, old]):
        response = staff_client.post(
            LIST_URL,
            {"action": "reencrypt_secrets", "_selected_action": [selected.pk]},
            follow=True,
        )

    assert any("Re-encrypted 2" in str(m) for m in response.context["messages"])
    with override_settings(SWITCHYARD_ENCRYPTION_KEYS=[new]):
        for key in (selected, unselected):
            assert crypto.decrypt(raw_secret(key.pk)) == PLAINTEXT


def test_error_reports_hide_the_posted_secret(staff_client, tenant):
    provider = ProviderFactory()

    response = staff_client.post(
        ADD_URL, {"provider": provider.pk, "tenant": tenant.pk, "new_secret": PLAINTEXT}
    )

    assert response.wsgi_request.sensitive_post_parameters == ("new_secret",)
