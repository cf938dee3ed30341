"""Celery tasks of routing: the daily catalog sync (beat schedule in config/celery.py)."""

from __future__ import annotations

from celery import shared_task

from routing import services
from routing.catalog_sources import CatalogSourceUnavailable

# Retries only when the pricing map could not be fetched for a reason that may pass (timeout,
# connection, 429, 5xx): 1, 2, 4, 8 minutes (jittered), then the next daily run catches up.
# A malformed source, or one provider's failing models list, is not retried: the run records
# why, and retrying would read the same thing.
SYNC_MAX_RETRIES = 4
SYNC_RETRY_BACKOFF_SECONDS = 60
SYNC_RETRY_BACKOFF_MAX_SECONDS = 15 * 60


@shared_task(
    name="routing.sync_catalog",
    acks_late=True,
    autoretry_for=(CatalogSourceUnavailable,),
    retry_backoff=SYNC_RETRY_BACKOFF_SECONDS,
    retry_backoff_max=SYNC_RETRY_BACKOFF_MAX_SECONDS,
    retry_jitter=True,
    max_retries=SYNC_MAX_RETRIES,
)
def sync_catalog() -> dict[str, object]:
    """Run the catalog sync; its CatalogSyncRun (admin) holds the diff."""
    run = services.sync_catalog()
    return {"run": run.pk, "status": run.status}
