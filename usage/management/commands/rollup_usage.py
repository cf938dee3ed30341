"""manage.py rollup_usage --since 2026-01-01 [--until ...] [--tenant SLUG ...]"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from tenants.models import Tenant
from usage.rollups import rebuild_rollups


def _moment(value: str) -> datetime:
    """An ISO date (midnight UTC) or datetime (UTC unless it says otherwise)."""
    parsed = parse_datetime(value)
    if parsed is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"Not an ISO date or datetime: {value!r}.")
        parsed = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return parsed if timezone.is_aware(parsed) else parsed.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Recompute the hourly usage rollups of a time range from the raw records (a backfill "
        "or a repair). Idempotent; hours whose raw records retention deleted are left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="Start (ISO date or datetime, UTC).")
        parser.add_argument("--until", help="End, exclusive (default: now).")
        parser.add_argument(
            "--tenant",
            dest="tenants",
            action="extend",
            nargs="+",
            metavar="SLUG",
            help="Only these tenants (default: every tenant with records in the range).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        start = _moment(options["since"])
        end = _moment(options["until"]) if options["until"] else timezone.now()
        if start >= end:
            raise CommandError("--since must be before --until.")
        tenant_ids = None
        if options["tenants"]:
            slugs = set(options["tenants"])
            found = dict(Tenant.objects.filter(slug__in=slugs).values_list("slug", "pk"))
            missing = slugs - found.keys()
            if missing:
                raise CommandError(f"No tenant {', '.join(sorted(missing))}.")
            tenant_ids = sorted(found.values())
        hours = rebuild_rollups(start=start, end=end, tenant_ids=tenant_ids)
        self.stdout.write(f"Recomputed {hours} tenant-hour(s) from {start} to {end}.")
