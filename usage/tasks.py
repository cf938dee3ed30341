"""Usage's background jobs. Each takes ids or plain values, calls one service and decides
whether to retry; all are idempotent, so a redelivered message (acks_late) changes nothing."""

from __future__ import annotations

import logging

import httpx
from celery import shared_task
from django.db import OperationalError
from django.utils import timezone

from usage import alerting, rollups, webhooks

logger = logging.getLogger(__name__)

# The database being briefly unreachable is worth a few more tries; anything else is a bug.
DATABASE_RETRY = {
    "autoretry_for": (OperationalError,),
    "retry_backoff": True,
    "max_retries": 3,
}


@shared_task(name="usage.send_cap_alerts", acks_late=True, **DATABASE_RETRY)
def send_cap_alerts() -> int:
    """Raise the spending alerts reached in the current billing periods and notify them."""
    return len(alerting.send_cap_alerts(now=timezone.now()))


@shared_task(
    name="usage.deliver_webhook",
    acks_late=True,
    autoretry_for=(httpx.TransportError, webhooks.WebhookRetryableError, OperationalError),
    retry_backoff=True,  # 1, 2, 4, 8, 16 s (jittered): a receiver restarting gets time
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=5,
)
def deliver_webhook(alert_id: int) -> str:
    """POST alert `alert_id` to its tenant's webhook, signed; nothing if already delivered."""
    return webhooks.deliver_alert_webhook(alert_id=alert_id, now=timezone.now())


@shared_task(name="usage.roll_up_usage", bind=True, acks_late=True, **DATABASE_RETRY)
def roll_up_usage(self, batch_size: int = rollups.ROLLUP_BATCH_RECORDS) -> int:
    """Recompute the hourly rollups touched by new (or late) records; a run that stops at
    its deadline queues its continuation."""
    run = rollups.roll_up_usage(now=timezone.now(), batch_size=batch_size)
    if not run.caught_up:
        self.apply_async(kwargs={"batch_size": batch_size})
    return run.hours


@shared_task(name="usage.apply_retention", bind=True, acks_late=True, **DATABASE_RETRY)
def apply_retention(self, batch_size: int = rollups.RETENTION_BATCH_SIZE) -> int:
    """Delete raw usage records past SWITCHYARD_USAGE_RETENTION_DAYS, their hours rolled up
    first; a run that stops at its deadline queues its continuation."""
    run = rollups.apply_usage_retention(now=timezone.now(), batch_size=batch_size)
    if not run.finished:
        self.apply_async(kwargs={"batch_size": batch_size})
    return run.deleted
