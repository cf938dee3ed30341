from tenants import services
from tenants.models import TenantAPIKey, hash_api_key


def test_a_new_api_key_is_stored_only_as_its_hash(tenant):
    key, raw = services.create_api_key(tenant=tenant, name="svc")

    assert raw.startswith("sy-")
    stored = TenantAPIKey.objects.get(pk=key.pk)
    assert stored.key_hash == hash_api_key(raw)
    assert raw not in {stored.key_hash, stored.prefix, stored.name}
    assert stored.matches(raw)
    assert not stored.matches(raw + "x")
