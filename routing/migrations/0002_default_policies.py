from decimal import Decimal

from django.db import migrations

# SPEC §2 defaults.
POLICIES = [
    (
        "eco",
        Decimal("0.001"),
        (0.7, 0.2, 0.1),
        ["ollama", "lmstudio", "vllm", "groq"],
        "Cheapest models that fit: local and free tiers, Groq.",
    ),
    (
        "balanced",
        Decimal("0.01"),
        (0.4, 0.4, 0.2),
        ["openrouter", "together", "fireworks"],
        "Cost and speed weighed equally, quality as a tie-breaker.",
    ),
    (
        "precision",
        Decimal("0.10"),
        (0.1, 0.3, 0.6),
        ["openai", "anthropic"],
        "The strongest models within the cap; cost matters least.",
    ),
]


def create_policies(apps, schema_editor):
    RoutingPolicy = apps.get_model("routing", "RoutingPolicy")
    LLMSettings = apps.get_model("routing", "LLMSettings")
    for level, cap, (wc, wl, wq), preferred, description in POLICIES:
        RoutingPolicy.objects.update_or_create(
            power_level=level,
            defaults={
                "max_price_per_1k": cap,
                "weight_cost": wc,
                "weight_latency": wl,
                "weight_quality": wq,
                "preferred_provider_kinds": preferred,
                "description": description,
            },
        )
    if not LLMSettings.objects.filter(tenant__isnull=True, end_user__isnull=True).exists():
        LLMSettings.objects.create(power_level="balanced", auto_failover=True)


def remove_policies(apps, schema_editor):
    apps.get_model("routing", "RoutingPolicy").objects.all().delete()
    apps.get_model("routing", "LLMSettings").objects.filter(tenant__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [("routing", "0001_initial")]
    operations = [migrations.RunPython(create_policies, remove_policies)]
