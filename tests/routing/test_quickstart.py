"""`manage.py quickstart` (make run): the demo, the printed lines, and a first rollup run."""

from __future__ import annotations

import io
import json

from django.core.management import call_command

from tenants.models import TenantAPIKey, hash_api_key
from usage.models import UsageRollupState


def test_quickstart_seeds_the_demo_prints_a_working_key_and_runs_the_rollup_job(
    db, settings, tmp_path
):
    settings.VAR_DIR = tmp_path
    out = io.StringIO()

    call_command("quickstart", stdout=out)

    demo = json.loads((tmp_path / "demo.json").read_text())
    key = demo["tenants"][0]["api_key"]
    printed = out.getvalue()
    assert f"Bearer {key}" in printed
    assert "/v1/chat/completions" in printed
    assert TenantAPIKey.objects.filter(key_hash=hash_api_key(key), revoked_at=None).exists()
    # The dashboard then says how far the rollups go, not that the job never ran.
    assert UsageRollupState.objects.exclude(complete_before=None).exists()

    again = io.StringIO()
    call_command("quickstart", stdout=again)
    assert f"Bearer {key}" in again.getvalue()  # the same demo, not a second one
