"""manage.py import_catalog [PATH] [--enable-new] [--provider SLUG ...]"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from providers.presets import preset_for
from providers.selectors import platform_providers
from routing.catalog import CatalogSourceError
from routing.services import import_pricing_map


class Command(BaseCommand):
    help = (
        "Update the model catalog from a LiteLLM-format pricing map (default: the bundled "
        "snapshot). New models arrive disabled; vanished ones are deprecated, never deleted."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "path",
            nargs="?",
            help="The pricing map (JSON); default: SWITCHYARD_CATALOG_SNAPSHOT.",
        )
        parser.add_argument(
            "--enable-new", action="store_true", help="Enable the models this import adds."
        )
        parser.add_argument(
            "--provider",
            dest="providers",
            action="extend",
            nargs="+",
            metavar="SLUG",
            help="Platform providers to import for (default: every one with pricing data).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = options["path"] or settings.SWITCHYARD_CATALOG_SNAPSHOT
        providers = None
        if options["providers"]:
            slugs = set(options["providers"])
            providers = list(platform_providers().filter(slug__in=slugs))
            missing = slugs - {p.slug for p in providers}
            if missing:
                raise CommandError(f"No platform provider {', '.join(sorted(missing))}.")
            unpriced = [p.slug for p in providers if not preset_for(p.kind).pricing_provider]
            if unpriced:
                raise CommandError(
                    f"The pricing map has no entries for the kind of {', '.join(unpriced)}."
                )
        try:
            diff = import_pricing_map(
                source=path, providers=providers, enable_new=options["enable_new"]
            )
        except CatalogSourceError as exc:
            raise CommandError(f"Nothing imported: {exc}") from exc
        self.stdout.write(diff.summary())
