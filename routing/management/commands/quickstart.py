"""Seed the demo on the first run and print how to use it: admin URL, a login, a curl."""

from __future__ import annotations

import io
import json

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils import timezone

from tenants.models import TenantAPIKey, hash_api_key
from usage.rollups import roll_up_usage


class Command(BaseCommand):
    help = "Seed the demo data once (kept in var/demo.json) and print the quick-start lines."

    def handle(self, *args, **options) -> None:
        path = settings.VAR_DIR / "demo.json"
        demo = json.loads(path.read_text()) if path.exists() else None
        if demo is None or not self._key_still_valid(demo):
            out = io.StringIO()
            call_command("seed_demo", "--json", stdout=out)
            demo = json.loads(out.getvalue())
            path.write_text(json.dumps(demo, indent=2))
            path.chmod(0o600)
        # The hourly rollup job's run, now rather than within the hour: the dashboard of a new
        # install then reads as on a running one, not "the rollup job has not run yet".
        roll_up_usage(now=timezone.now())
        base = demo["base_url"]
        tenant = demo["tenants"][0]
        owner = next(u for u in tenant["users"] if u["role"] == "owner")
        self.stdout.write(
            f"""
Switchyard is starting on {base}

  Admin (staff):   {base}/admin/     login: admin / {owner["password"]}
  Tenant pages:    {base}/           login: {owner["username"]} / {owner["password"]}
  API key ({tenant["slug"]}):  {tenant["api_key"]}   (all demo keys: var/demo.json)

Try the completion API (the bundled simulator is the upstream):

  curl {base}/v1/chat/completions \\
    -H "Authorization: Bearer {tenant["api_key"]}" \\
    -H "Content-Type: application/json" \\
    -d '{{"model": "auto", "messages": [{{"role": "user", "content": "Hello!"}}]}}'
"""
        )

    @staticmethod
    def _key_still_valid(demo: dict) -> bool:
        try:
            raw = demo["tenants"][0]["api_key"]
        except (KeyError, IndexError):
            return False
        return TenantAPIKey.objects.filter(
            key_hash=hash_api_key(raw), revoked_at__isnull=True
        ).exists()
