"""Background jobs of providers: health checks (every minute) and key validation.

The schedule is in config/celery.py. Tasks take ids, call providers.health or
providers.services, and decide whether to retry.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import OperationalError
from django.utils import timezone

from providers import health, services, validation
from providers.choices import KeyStatus
from providers.models import Provider, ProviderKey
from tenants.crypto import DecryptionError

logger = logging.getLogger(__name__)

# Rows per DELETE when pruning health history: a minute's checks of every provider is a
# few dozen rows, so a batch this size keeps each statement short even after a long outage
# of the task.
PRUNE_BATCH_SIZE = 1000
# Key ids read per query by the daily validation (bounds the memory of one page of ids).
VALIDATE_PAGE_SIZE = 500
# A key check waits at most this long for the provider.
KEY_VALIDATION_TIMEOUT_SECONDS = 20
# Statuses a key leaves only by being replaced (or by staff's "test key" action).
FINAL_STATUSES = (KeyStatus.INVALID, KeyStatus.DISABLED)


# The database being briefly unreachable is worth a few more tries (every task here is
# idempotent, so a retry after a partial run changes nothing twice).
DATABASE_RETRY = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": True,
    "max_retries": 3,
}


class ProviderUnavailableError(Exception):
    """The provider did not give a verdict on the key (no answer, 429, 5xx): try later."""


# No retries: the next minute's run is the retry, and an overlapping one would only
# check the same providers twice.
@shared_task(name="providers.check_health", acks_late=True)
def check_health() -> int:
    """Check every enabled provider (one failure never stops the others); prune old checks."""
    checked = 0
    for provider in Provider.objects.filter(is_enabled=True):
        try:
            if health.check_provider(provider=provider, now=timezone.now()) is not None:
                checked += 1
        except Exception:  # a boundary: the next provider still gets its check
            logger.exception("provider_health.check_crashed", extra={"provider": provider.slug})
    pruned = services.prune_health_checks(now=timezone.now(), batch_size=PRUNE_BATCH_SIZE)
    if pruned:
        logger.info("provider_health.pruned", extra={"rows": pruned})
    return checked


@shared_task(name="providers.check_provider_health", acks_late=True, **DATABASE_RETRY)
def check_provider_health(provider_id: int) -> bool | None:
    """Check one provider now; True/False is the outcome, None when it was not checked."""
    provider = Provider.objects.filter(pk=provider_id).first()
    if provider is None:
        return None
    check = health.check_provider(provider=provider, now=timezone.now())
    return None if check is None else check.ok


@shared_task(
    name="providers.validate_provider_key",
    acks_late=True,
    autoretry_for=(ProviderUnavailableError, OperationalError),
    retry_backoff=30,  # 30 s, 60 s, 120 s, 240 s (jittered): rides out a short outage
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=4,
)
def validate_provider_key(key_id: int) -> str | None:
    """Check key `key_id` with a 5-token request; an invalid tenant or user key alerts its
    owner. Idempotent: an invalid key is left alone until it is replaced. The key's new
    status, or None when it was not checked."""
    key = ProviderKey.objects.select_related("provider").filter(pk=key_id).first()
    if key is None or key.status in FINAL_STATUSES:
        return None
    try:
        secret = key.reveal_secret()
    except DecryptionError:
        logger.warning("provider_key.unreadable", extra={"provider_key_id": key_id})
        return None
    result = validation.check_key(key.provider, secret, timeout=KEY_VALIDATION_TIMEOUT_SECONDS)
    if result.transient:
        raise ProviderUnavailableError(result.error)
    error = "" if result.ok else result.error.replace(secret, key.masked)
    settled = services.settle_key_validation(
        key_id=key_id,
        secret=secret,
        ok=result.ok,
        error=error,
        now=timezone.now(),
        on_invalid=_alert_owner,
    )
    return None if settled is None else settled.status


@shared_task(name="providers.validate_active_keys", acks_late=True, **DATABASE_RETRY)
def validate_active_keys() -> int:
    """Queue a check of every enabled key that routing may use (active or pending)."""
    ids = (
        ProviderKey.objects.filter(
            is_enabled=True,
            provider__is_enabled=True,
            status__in=[KeyStatus.ACTIVE, KeyStatus.PENDING],
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    queued = 0
    for key_id in ids.iterator(chunk_size=VALIDATE_PAGE_SIZE):
        validate_provider_key.delay(key_id)
        queued += 1
    return queued


def _alert_owner(key: ProviderKey) -> None:
    """Tell the key's tenant (and end user) that it no longer routes; platform keys are for
    staff, who see them in the admin. Runs inside the transaction that marked the key.

    Alerts belong to usage, which providers must not import (STYLE §1); a task is wiring,
    like config, so the import is made here, late, and nowhere else in providers.
    """
    if key.tenant_id is None:
        logger.warning("provider_key.platform_key_invalid", extra={"provider_key_id": key.pk})
        return
    from usage.alerts import raise_alert
    from usage.choices import AlertKind

    raise_alert(
        tenant_id=key.tenant_id,
        end_user_id=key.end_user_id,
        kind=AlertKind.KEY_INVALID,
        # The gateway's scheme (routing/gateway/events.py): one alert per time a key goes bad.
        dedupe_key=f"key_invalid:{key.pk}:{key.updated_at:%Y%m%d%H%M%S}",
        message=f"{key.provider.name} did not accept the key {key.masked}: {key.last_error} "
        "It was taken out of routing; replace it on the keys page.",
    )
