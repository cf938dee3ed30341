"""Bearer authentication against the snapshot: a hash lookup, no database.

Besides tenant API keys, the web playground's short-lived token (`sy-pg-…`, minted by
routing.selectors.playground_token) is accepted: a signed tenant and end user, checked with
SECRET_KEY, no database either. Only a value that is not a known API key pays for that check.
"""

from __future__ import annotations

import hashlib
import hmac

from django.core import signing

from routing.gateway.errors import GatewayError
from routing.gateway.http import header
from routing.gateway.snapshot import APIKeyInfo, Snapshot, TenantInfo
from routing.selectors import (
    PLAYGROUND_TOKEN_MAX_AGE_SECONDS,
    PLAYGROUND_TOKEN_PREFIX,
    PLAYGROUND_TOKEN_SALT,
)
from tenants.choices import Scope
from tenants.models import API_KEY_DISPLAY_CHARS

INVALID = "Invalid API key. Pass a Switchyard key as 'Authorization: Bearer sy-...'."
PLAYGROUND_PREFIX = PLAYGROUND_TOKEN_PREFIX.encode()
PLAYGROUND_SCOPES = frozenset({Scope.COMPLETIONS.value, Scope.MODELS.value})


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
    if key is None and raw.startswith(PLAYGROUND_PREFIX):
        key = playground_key(raw[len(PLAYGROUND_PREFIX) :])
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


def playground_key(token: bytes) -> APIKeyInfo | None:
    """The caller a playground token stands for, or None when it is forged, malformed or
    older than an hour."""
    try:
        data = signing.loads(
            token.decode("ascii"),
            salt=PLAYGROUND_TOKEN_SALT,
            max_age=PLAYGROUND_TOKEN_MAX_AGE_SECONDS,
        )
    except (signing.BadSignature, UnicodeDecodeError, ValueError):
        return None  # SignatureExpired is a BadSignature
    if not isinstance(data, dict):
        return None
    tenant_id, end_user_id, external_id = data.get("t"), data.get("u"), data.get("x")
    if not (
        isinstance(tenant_id, int) and isinstance(end_user_id, int) and isinstance(external_id, str)
    ):
        return None
    return APIKeyInfo(
        id=None,
        tenant_id=tenant_id,
        scopes=PLAYGROUND_SCOPES,
        end_user_id=end_user_id,
        end_user_external_id=external_id,
        requests_per_minute=None,  # no per-key limit: the plan's limits and caps apply
    )
