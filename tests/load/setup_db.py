"""`python -m tests.load.setup_db`: migrate, seed_demo --json, then make the demo tenant billable.

The same two management commands `make run` uses, run through `call_command` so the bench
pays for Django's start-up once. The demo users' passwords are hashed with a fast hasher:
nobody logs in during a benchmark, and PBKDF2 for seven users costs ~4 s of the CI smoke
test's budget.

The first demo tenant is then moved to a "bench" plan whose rate limits are far above what
one machine can send (so every request still runs the limiter's Redis/Lua admission and
settlement, but none is refused) and given prepaid credits (so the credit reservation runs
too). Prints seed_demo's JSON on stdout, nothing else.
"""

from __future__ import annotations

import io
import json
import os
import sys
from decimal import Decimal

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

NEVER = 2_000_000_000  # requests (or tokens) per period: never reached by the bench
CREDITS_USD = Decimal("1000000")


def make_billable(slug: str) -> None:
    from django.contrib.auth import get_user_model

    from tenants import services as tenant_services
    from tenants.models import Plan, Tenant
    from usage import services as usage_services

    admin = get_user_model().objects.get(username="admin")
    plan, _ = Plan.objects.update_or_create(
        slug="bench",
        defaults={
            "name": "Benchmark (limits never reached)",
            "requests_per_minute": NEVER,
            "requests_per_hour": NEVER,
            "requests_per_day": NEVER,
            "tokens_per_minute": NEVER,
            "allows_platform_keys": True,
            "platform_fee_percent": Decimal("10.00"),
            "prepaid": True,
            "sort_order": 99,
        },
    )
    tenant = Tenant.objects.get(slug=slug)
    tenant_services.update_tenant(tenant=tenant, plan=plan, actor=admin)
    usage_services.grant_credits(
        tenant=tenant, amount_usd=CREDITS_USD, reason="benchmark", actor=admin
    )


def main() -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import override_settings

    call_command("migrate", interactive=False, verbosity=0, stdout=sys.stderr)
    out = io.StringIO()
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        call_command("seed_demo", "--json", stdout=out)
    report = json.loads(out.getvalue())
    make_billable(report["tenants"][0]["slug"])
    sys.stdout.write(json.dumps(report))


if __name__ == "__main__":
    main()
