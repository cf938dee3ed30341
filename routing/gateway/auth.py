"""Bearer authentication against the snapshot: a hash lookup, no database."""

from __future__ import annotations

import hashlib
import hmac

from routing.gateway.errors import GatewayError
from routing.gateway.http import header
from routing.gateway.snapshot import APIKeyInfo, Snapshot, TenantInfo
from tenants.models import API_KEY_DISPLAY_CHARS

INVALID = "Invalid API key. Pass a Switchyard key as 'Authorization: Bearer sy-...'."


def authenticate(
    scope: dict, snapshot: Snapshot, required_scope: str
) -> tuple[APIKeyInfo, TenantInfo]:
    """The key and tenant of the request, or 401 / 403 in OpenAI's envelope."""
    value = header(scope, b"authorization")
    if value is None or not value[:7].lower() == b"bearer ":
        raise GatewayError(401, INVALID, code="invalid_api_key")
    raw = value[7:].strip()
    # Look up by the key's non-secret display prefix, then compare the hash in constant time,
    # so response timing says nothing about how close a guess was.
    digest = hashlib.sha256(raw).hexdigest()
    key = None
    for key_hash, info in snapshot.api_keys.get(raw[:API_KEY_DISPLAY_CHARS].decode("latin-1"), ()):
        if hmac.compare_digest(key_hash, digest):
            key = info
    if key is None:
        raise GatewayError(401, INVALID, code="invalid_api_key")
    tenant = snapshot.tenants.get(key.tenant_id)
    if tenant is None:
        raise GatewayError(401, INVALID, code="invalid_api_key")
    if not tenant.is_active:
        raise GatewayError(403, "This tenant is suspended.", code="tenant_suspended")
    if required_scope not in key.scopes:
        raise GatewayError(
            403, f"This API key lacks the '{required_scope}' scope.", code="insufficient_scope"
        )
    return key, tenant
