"""manage.py sync_catalog: the daily catalog sync, now (the admin's "Sync catalog now")."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from routing.catalog_sources import CatalogSourceUnavailable
from routing.models import CatalogSyncRun
from routing.services import sync_catalog


class Command(BaseCommand):
    help = (
        "Sync the model catalog with the pricing map (SWITCHYARD_CATALOG_SOURCE_URL or the "
        "bundled snapshot) and each platform provider's models list, and print the diff. New "
        "models arrive disabled; vanished ones are deprecated, never deleted."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = sync_catalog()
        except CatalogSourceUnavailable as exc:
            raise CommandError(
                f"Catalog sync #{exc.run.pk} failed, try again later: {exc}"
            ) from exc
        self.stdout.write(run.headline)
        self.stdout.write(run.diff)
        if run.status == CatalogSyncRun.Status.FAILED:
            raise CommandError(f"Nothing changed: {run.error}")
        if run.status == CatalogSyncRun.Status.PARTIAL:
            self.stderr.write(f"Some providers were left unchanged:\n{run.error}")
