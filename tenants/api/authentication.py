"""`Authorization: Bearer sy-...` for the management API: the key names its tenant."""

from __future__ import annotations

import hmac
import logging
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied

from tenants.models import API_KEY_DISPLAY_CHARS, API_KEY_PREFIX, TenantAPIKey, hash_api_key

logger = logging.getLogger(__name__)

# A generated key is 46 characters; anything much longer is not one of ours and is not hashed.
MAX_KEY_LENGTH = 128


class APIKeyUser:
    """`request.user` for an API-key caller: authenticated, but no login user and no rights.

    It is not a `User`: code that stores `request.user` in a foreign key (the audit log's
    `actor`) must pass `request.api_key` as the actor label instead.
    """

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, api_key: TenantAPIKey) -> None:
        self.api_key = api_key

    def __str__(self) -> str:
        return self.get_username()

    def get_username(self) -> str:
        return f"api-key:{self.api_key.prefix}"

    def has_perm(self, perm: str, obj: Any = None) -> bool:
        return False

    def has_perms(self, perm_list: Any, obj: Any = None) -> bool:
        return False

    def has_module_perms(self, app_label: str) -> bool:
        return False


class TenantAPIKeyAuthentication(BaseAuthentication):
    """A tenant API key as a bearer token: sets `request.tenant` and `request.api_key`.

    Unknown or revoked keys are 401; a suspended tenant is 403 (SPEC §3). The key itself
    never appears in an error or a log line.
    """

    keyword = b"bearer"

    def authenticate(self, request) -> tuple[APIKeyUser, TenantAPIKey] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None  # not ours: the session (or nothing) authenticates
        if len(parts) != 2:
            raise AuthenticationFailed("Malformed Authorization header: use 'Bearer <API key>'.")
        try:
            raw = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed("Invalid API key.") from None
        key = self._lookup(raw)
        if key is None:
            logger.info("api_key.auth_failed", extra={"reason": "unknown"})
            raise AuthenticationFailed("Invalid API key.")
        if key.is_revoked:
            logger.info("api_key.auth_failed", extra={"reason": "revoked", "key_id": key.pk})
            raise AuthenticationFailed("This API key has been revoked.")
        if not key.tenant.is_active:
            raise PermissionDenied("This tenant is suspended.")
        for target in (request, request._request):
            target.tenant = key.tenant
            target.api_key = key
        return APIKeyUser(key), key

    def authenticate_header(self, request) -> str:
        # Makes DRF answer an unauthenticated request with 401 (not 403) plus this header.
        return 'Bearer realm="api"'

    @staticmethod
    def _lookup(raw: str) -> TenantAPIKey | None:
        if not raw.startswith(API_KEY_PREFIX) or len(raw) > MAX_KEY_LENGTH:
            return None
        digest = hash_api_key(raw)
        # The prefix narrows the search to (almost always) one row; the hash decides, in
        # constant time, so a near miss takes as long as a far one.
        candidates = TenantAPIKey.objects.select_related(
            "tenant", "tenant__plan", "end_user"
        ).filter(prefix=raw[:API_KEY_DISPLAY_CHARS])
        for candidate in candidates:
            if hmac.compare_digest(candidate.key_hash, digest):
                return candidate
        return None


class TenantAPIKeyScheme(OpenApiAuthenticationExtension):
    """drf-spectacular: document the bearer scheme (registered on import of this module)."""

    target_class = "tenants.api.authentication.TenantAPIKeyAuthentication"
    name = "TenantAPIKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A tenant API key (`sy-...`) with the scope the operation names.",
        }
