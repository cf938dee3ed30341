"""Provider health checks: a models-list request with a platform key, once a minute.

A check stores its outcome (ProviderHealthCheck, the Provider's health fields, which
`llm_provider_health` reports) and feeds the circuit breaker the gateway routes by, so a
provider that stops answering is cooled down even when no request has hit it yet, and one
that answers again returns to routing without waiting for a probe request.

The breaker lives in Redis (providers/cooldown.py). Without REDIS_URL (the embedded
default) the gateway keeps its breaker in its own process memory, which a worker cannot
reach: there the check only records health.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime

import redis
from django.conf import settings

from providers import cooldown, selectors, services, validation
from providers.choices import KeyStatus
from providers.models import Provider, ProviderHealthCheck, ProviderKey
from tenants.crypto import DecryptionError

logger = logging.getLogger(__name__)

# A models list is one small GET; a provider slower than this is not healthy. Checks run one
# after another every minute, so this times the number of providers bounds a run.
HEALTH_CHECK_TIMEOUT_SECONDS = 5
# The gateway treats these as the key's fault, not the provider's (routing/gateway/
# completions.py): a rejected platform key must not cool a provider down for tenants whose
# own keys work. The check still fails, so staff see it.
KEY_REJECTED = frozenset({401, 403})


@functools.cache
def _redis() -> redis.Redis | None:
    if not settings.REDIS_URL:
        return None
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def _platform_key(provider: Provider) -> ProviderKey | None:
    """A usable platform key of `provider`, a validated one first."""
    keys = selectors.platform_keys().filter(
        provider=provider, is_enabled=True, status__in=[KeyStatus.ACTIVE, KeyStatus.PENDING]
    )
    return min(keys, key=lambda k: (k.status != KeyStatus.ACTIVE, k.pk), default=None)


def check_provider(*, provider: Provider, now: datetime) -> ProviderHealthCheck | None:
    """Check `provider` with a platform key and record the outcome; None when it is disabled
    or has no usable platform key (nothing to check with). Never raises for the provider's
    failures; the stored error never contains the key."""
    if not provider.is_enabled:
        return None
    key = _platform_key(provider)
    if key is None:
        logger.info("provider_health.skipped_no_platform_key", extra={"provider": provider.slug})
        return None
    try:
        secret = key.reveal_secret()
    except DecryptionError:
        logger.warning("provider_health.key_unreadable", extra={"provider_key_id": key.pk})
        return None
    result = validation.validate_key(
        protocol=provider.protocol,
        kind=provider.kind,
        base_url=provider.base_url,
        api_key=secret,
        options=provider.options or {},
        model_id=None,  # a models list: no tokens spent, no catalog lookup
        timeout=HEALTH_CHECK_TIMEOUT_SECONDS,
        tenant_endpoint=provider.tenant_id is not None,
    )
    # Validation scrubs its messages by value and by pattern; this is the last line.
    error = "" if result.ok else result.error.replace(secret, key.masked)
    check = services.record_health_check(
        provider=provider, ok=result.ok, latency_ms=result.latency_ms, error=error, now=now
    )
    if result.ok:
        _close_breaker(provider.pk)
    elif result.status not in KEY_REJECTED:
        _record_failure(provider)
    log = logger.info if result.ok else logger.warning
    log(
        "provider_health.checked",
        extra={
            "provider": provider.slug,
            "ok": result.ok,
            "status": provider.health_status,
            "latency_ms": result.latency_ms,
        },
    )
    return check


def _record_failure(provider: Provider) -> None:
    """Count the failure in the shared breaker; open it once the check says the provider is
    down. Checks come a minute apart and the breaker's failure window is a minute, so their
    failures alone would seldom add up in one window: the provider's own count of failures in
    a row (in the database) is the longer memory."""
    client = _redis()
    if client is None:
        return
    threshold = settings.SWITCHYARD_COOLDOWN_FAILURES
    if provider.consecutive_failures >= threshold:
        threshold = 1
    try:
        opened = client.eval(
            cooldown.RECORD_FAILURE,
            3,
            *cooldown.keys(provider.pk),
            *cooldown.failure_args(
                threshold=threshold, cooldown_seconds=settings.SWITCHYARD_COOLDOWN_SECONDS
            ),
        )
    except redis.RedisError:
        logger.warning("provider_health.breaker_not_updated", extra={"provider": provider.slug})
        return
    if opened:
        logger.warning("provider.cooled_down", extra={"provider_id": provider.pk})


def _close_breaker(provider_id: int) -> None:
    """The provider answered: forget its failures and end any cool-down or probation. The
    gateway sees it at its next poll (it re-reads the keys every poll; no bump needed)."""
    client = _redis()
    if client is None:
        return
    try:
        client.delete(*cooldown.keys(provider_id))
    except redis.RedisError:
        logger.warning("provider_health.breaker_not_updated", extra={"provider_id": provider_id})
