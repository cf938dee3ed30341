"""`Authorization: Bearer sy-...` for the management API: the key names its tenant.

Failed key authentications are counted per client address in the gateway's counter
(tenants.throttle, kind `API`): past SWITCHYARD_AUTH_FAILURE_LIMIT within the window, every
request bearing a key from that address is refused 429 with Retry-After, valid key or not:
here at once (one Redis read per request with a key), on /v1/* from that address's next
failure on the web process it reaches (the gateway keeps the blocks it learned, so its
successful requests cost no Redis call). Session calls are not refused (the log-in page has
its own limits).
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

import redis
from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied, Throttled

from config.client_ip import client_address
from tenants import throttle
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


class TooManyAuthFailures(Throttled):
    """429 for an address past the failed-authentication limit (the gateway's wording)."""

    default_code = "too_many_auth_failures"

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            detail="Too many failed authentications from this address; "
            f"try again in {retry_after} seconds."
        )
        self.wait = retry_after  # DRF's handler sends it as Retry-After


class TenantAPIKeyAuthentication(BaseAuthentication):
    """A tenant API key as a bearer token: sets `request.tenant` and `request.api_key`.

    Unknown or revoked keys and malformed bearer headers are 401 and count as failures of
    the client address; an address past the limit is 429 (see the module doc). A suspended
    tenant is 403 (SPEC §3). The key itself never appears in an error or a log line.
    """

    keyword = b"bearer"

    def authenticate(self, request) -> tuple[APIKeyUser, TenantAPIKey] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != self.keyword:
            return None  # not ours: the session (or nothing) authenticates
        address = client_address(request)
        identity = throttle.api_identity(address) if address else None
        if identity is not None:
            self._refuse_blocked(identity)
        try:
            return self._authenticate(request, parts)
        except AuthenticationFailed:
            refusal = self._failed(identity) if identity is not None else None
            if refusal is not None:
                raise refusal from None
            raise

    def _authenticate(self, request, parts: list[bytes]) -> tuple[APIKeyUser, TenantAPIKey]:
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

    @staticmethod
    def _refuse_blocked(identity: str) -> None:
        """429 when the address is past the limit: one Redis round trip (GET and PTTL)."""
        try:
            retry_after = throttle.refusal(
                throttle.API, identity, limit=settings.SWITCHYARD_AUTH_FAILURE_LIMIT
            )
        except (redis.RedisError, OSError):
            # Fails open, like the gateway's counting and the rate limits.
            logger.warning("auth.throttle_unavailable", extra={"client_address": identity})
            return
        if retry_after is not None:
            raise TooManyAuthFailures(retry_after)

    @staticmethod
    def _failed(identity: str) -> TooManyAuthFailures | None:
        """Count a failed authentication: None to answer the 401, or the 429 to answer."""
        limit = settings.SWITCHYARD_AUTH_FAILURE_LIMIT
        try:
            verdict = throttle.count_failure(
                throttle.API,
                identity,
                limit=limit,
                window_seconds=settings.SWITCHYARD_AUTH_FAILURE_WINDOW_SECONDS,
            )
        except (redis.RedisError, OSError):
            logger.warning("auth.failure_not_counted", extra={"client_address": identity})
            return None
        if not throttle.refuses(verdict, identity, limit):
            return None
        return TooManyAuthFailures(verdict.retry_after)

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
