"""Re-encrypt every stored secret with the newest SWITCHYARD_ENCRYPTION_KEYS key.

Rotation: put the new key first in SWITCHYARD_ENCRYPTION_KEYS (older keys after it, so
existing secrets still decrypt), deploy, run this command, then remove the old keys.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from tenants import crypto
from tenants.services import ROTATION_BATCH_SIZE, rotate_encryption_keys


class Command(BaseCommand):
    help = "Re-encrypt every encrypted field with the first key in SWITCHYARD_ENCRYPTION_KEYS."

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be re-encrypted; write nothing.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=ROTATION_BATCH_SIZE,
            help=f"Rows per transaction (default {ROTATION_BATCH_SIZE}).",
        )

    def handle(self, *args, dry_run: bool, batch_size: int, **options):
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        keys = crypto.configured_keys()
        self.stdout.write(f"{len(keys)} key(s) configured; re-encrypting with the first.")
        unreadable_total = 0

        def report(label: str, rewritten: int, unreadable: int) -> None:
            nonlocal unreadable_total
            unreadable_total += unreadable
            verb = "would re-encrypt" if dry_run else "re-encrypted"
            line = f"{label}: {verb} {rewritten}"
            if unreadable:
                line += f", {unreadable} unreadable with every configured key"
            self.stdout.write(line)

        total = rotate_encryption_keys(dry_run=dry_run, batch_size=batch_size, report=report)
        summary = f"{'Would re-encrypt' if dry_run else 'Re-encrypted'} {total} secret(s)."
        self.stdout.write(self.style.SUCCESS(summary))
        if unreadable_total:
            raise CommandError(
                f"{unreadable_total} secret(s) could not be decrypted with any configured key; "
                "keep the old keys until they are replaced."
            )
