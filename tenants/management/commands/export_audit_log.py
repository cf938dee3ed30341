"""Write the audit log (one tenant's, or everything) as CSV or JSON lines, oldest first.

For archives and SIEM imports: `--since` the last run's date makes an incremental export.
The export is itself audited (`audit_log.exported`, by `command:export_audit_log`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_date, parse_datetime

from tenants import audit_export
from tenants.models import Tenant
from tenants.selectors import AuditFilters, platform_audit_entries
from tenants.services import record_audit_export

ACTOR_LABEL = "command:export_audit_log"


def _moment(value: str, option: str) -> datetime:
    """A date (its midnight, UTC) or an ISO date-time (UTC when it names no offset)."""
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is None:
            raise CommandError(f"{option}: not a date (YYYY-MM-DD) or ISO date-time: {value!r}.")
        moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class _CommandActor:
    def get_username(self) -> str:
        return ACTOR_LABEL


class Command(BaseCommand):
    help = "Export audit log entries as CSV or JSON lines (oldest first) to stdout or a file."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", metavar="SLUG", help="Only this tenant's entries.")
        parser.add_argument("--since", metavar="DATE", help="Entries at or after (UTC).")
        parser.add_argument("--until", metavar="DATE", help="Entries before (UTC).")
        parser.add_argument(
            "--action", default="", help='An action, or a prefix ending in "." (`member.`).'
        )
        parser.add_argument("--format", choices=["csv", "jsonl"], default="csv")
        parser.add_argument("--output", metavar="FILE", help="Write here instead of stdout.")

    def handle(self, *args, **options) -> None:
        slug = options["tenant"] or ""
        tenant = None
        if slug:
            tenant = Tenant.objects.filter(slug=slug).first()
            if tenant is None:
                raise CommandError(f"No tenant with the slug {slug!r}.")
        filters = AuditFilters(
            action=options["action"],
            since=_moment(options["since"], "--since") if options["since"] else None,
            until=_moment(options["until"], "--until") if options["until"] else None,
        )
        fmt = options["format"]
        own = record_audit_export(
            actor=_CommandActor(),
            tenant=tenant,
            fmt=fmt,
            filters={**filters.as_dict(), **({"tenant": slug} if slug else {})},
        )
        entries = (
            platform_audit_entries(tenant_slug=slug, filters=filters)
            .filter(pk__lt=own.pk)
            .order_by("created_at", "pk")
            .iterator(chunk_size=audit_export.EXPORT_BATCH_ROWS)
        )
        if fmt == "csv":
            chunks = audit_export.csv_chunks(entries, for_tenant=False)
        else:
            chunks = audit_export.jsonl_lines(entries, for_tenant=False)
        path = options["output"]
        if path:
            with open(path, "w", encoding="utf-8", newline="") as out:
                out.writelines(chunks)
            self.stderr.write(f"Wrote the audit log to {path}.")
        else:
            for chunk in chunks:
                self.stdout.write(chunk, ending="")
