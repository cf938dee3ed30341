"""Insert the usage that gateway processes journaled but did not write before they died."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from usage import journal


class Command(BaseCommand):
    help = (
        "Replay usage journal segments left by gateway processes that died (killed, crashed) "
        "before writing them; entries already in the database are skipped. Gateway processes "
        "do this at start-up; run it on a node whose gateway will not come back."
    )

    def handle(self, *args, **options) -> None:
        folder = journal.directory()
        if folder is None:
            self.stdout.write("The usage journal is switched off (SWITCHYARD_USAGE_JOURNAL_DIR).")
            return
        inserted = journal.replay(folder)
        self.stdout.write(f"Replayed {inserted} usage records from {folder}.")
