"""Bearer authentication against the snapshot: a hash lookup, no database.

Besides tenant API keys, the web playground's short-lived token (`sy-pg-…`, minted by
routing.selectors.playground_token) is accepted: a signed tenant and end user, checked with
SECRET_KEY, no database either. Only a value that is not a known API key pays for that check.

Failed authentications are counted per client address (`AuthFailures`, tenants.throttle):
past SWITCHYARD_AUTH_FAILURE_LIMIT in a window, the address gets 429 until the window ends,
even with a valid key, so guessing keys is slow and costly everywhere at once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

import redis
from django.conf import settings
from django.core import signing

from config.client_ip import parse_trusted_proxies, resolve_client_address
from routing.gateway.errors import GatewayError
from routing.gateway.http import header
from routing.gateway.snapshot import APIKeyInfo, Snapshot, TenantInfo
from routing.selectors import (
    PLAYGROUND_TOKEN_MAX_AGE_SECONDS,
    PLAYGROUND_TOKEN_PREFIX,
    PLAYGROUND_TOKEN_SALT,
)
from tenants import throttle
from tenants.choices import Scope
from tenants.models import API_KEY_DISPLAY_CHARS

logger = logging.getLogger(__name__)

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


class AuthFailures:
    """Refuses client addresses with too many failed authentications (see the module doc).

    `refuse_blocked` runs on every request and is a truthiness test while no address is
    refused; `failed` runs on the 401 path only and makes the one Redis call.
    """

    def __init__(self) -> None:
        self.limit = settings.SWITCHYARD_AUTH_FAILURE_LIMIT
        self.window_seconds = settings.SWITCHYARD_AUTH_FAILURE_WINDOW_SECONDS
        self.trusted_proxies = parse_trusted_proxies(settings.SWITCHYARD_TRUSTED_PROXIES)
        self.blocked = throttle.Blocklist()
        self._local_counters = None

    def _local(self):
        if self._local_counters is None:
            import fakeredis

            self._local_counters = fakeredis.FakeAsyncRedis()
        return self._local_counters

    def address(self, scope: dict) -> str | None:
        client = scope.get("client")
        # Every X-Forwarded-For line, joined: a proxy that adds its own line (HAProxy) leaves
        # the client's forged one first, and only the rightmost entries are the proxies'.
        forwarded = (
            b",".join(v for k, v in scope["headers"] if k == b"x-forwarded-for")
            if self.trusted_proxies
            else None
        )
        address = resolve_client_address(
            client[0] if client else None,
            forwarded.decode("latin-1") if forwarded else None,
            self.trusted_proxies,
        )
        # Counted under the same identity as the management API's (an IPv6 client by /64).
        return throttle.api_identity(address) if address else address

    def refuse_blocked(self, scope: dict) -> None:
        """429 when the request's address is refused."""
        if not self.blocked:
            return
        address = self.address(scope)
        retry_after = self.blocked.retry_after(address) if address else None
        if retry_after is not None:
            raise self._refusal(retry_after)

    async def failed(self, scope: dict, client, error: GatewayError) -> GatewayError:
        """Count a failed authentication: the error to answer with, `error` or a 429."""
        address = self.address(scope)
        if address is None:
            return error
        if client is None:  # the embedded default has no Redis and runs one process
            client = self._local()
        try:
            verdict = await throttle.count_failure_async(
                client,
                throttle.API,
                address,
                limit=self.limit,
                window_seconds=self.window_seconds,
            )
        except (redis.RedisError, OSError):
            # Like the rate limits, failure counting fails open: the 401 stands.
            logger.warning("auth.failure_not_counted", extra={"client_address": address})
            return error
        if verdict.is_blocked:
            self.blocked.add(address, verdict.retry_after)
        if not throttle.refuses(verdict, address, self.limit):
            return error
        return self._refusal(verdict.retry_after)

    def _refusal(self, retry_after: int) -> GatewayError:
        return GatewayError(
            429,
            "Too many failed authentications from this address; "
            f"try again in {retry_after} seconds.",
            code="too_many_auth_failures",
            headers=[(b"retry-after", str(retry_after).encode())],
        )
