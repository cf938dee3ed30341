from decimal import Decimal

from django.db import migrations

# SPEC §4 defaults; tokens per minute are ours (SPEC names the limit, not the numbers).
PLANS = [
    ("trial", "Trial", 10, 100, 500, 20_000, 0),
    ("starter", "Starter", 30, 1_000, 10_000, 100_000, 1),
    ("professional", "Professional", 100, 5_000, 50_000, 500_000, 2),
    ("enterprise", "Enterprise", 500, 20_000, None, 2_000_000, 3),
]


def create_plans(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    for slug, name, rpm, rph, rpd, tpm, order in PLANS:
        Plan.objects.update_or_create(
            slug=slug,
            defaults={
                "name": name,
                "requests_per_minute": rpm,
                "requests_per_hour": rph,
                "requests_per_day": rpd,
                "tokens_per_minute": tpm,
                "allows_platform_keys": True,
                "platform_fee_percent": Decimal("10.00"),
                "sort_order": order,
            },
        )


def remove_plans(apps, schema_editor):
    Plan = apps.get_model("tenants", "Plan")
    Plan.objects.filter(slug__in=[p[0] for p in PLANS], tenants__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("tenants", "0001_initial")]
    operations = [migrations.RunPython(create_plans, remove_plans)]
