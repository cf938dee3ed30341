"""manage.py seed_demo [--json]: demo tenants, users and simulator providers (idempotent).

Running it again creates no duplicate tenant, user, membership, provider, key or model; each
run issues one new API key per tenant (keys are shown once, so a rerun needs fresh ones).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from providers import services as provider_services
from providers.choices import KeyStatus, ProviderKind, WireProtocol
from providers.models import Provider
from providers.selectors import platform_keys, platform_providers
from routing.choices import ModelMode
from routing.selectors import platform_tenants
from routing.services import CATALOG_SYNC_OPTION, ensure_catalog_model
from tenants import selectors as tenant_selectors
from tenants import services as tenant_services
from tenants.choices import Role
from tenants.models import Plan
from usage import services as usage_services
from usage.selectors import credit_entries

DEMO_CREDITS_USD = Decimal(100)
DEMO_CREDITS_REASON = "Demo credits"

DEFAULT_PASSWORD = "switchyard-demo"  # noqa: S105 - a documented demo credential
ADMIN_USERNAME = "admin"
TENANTS = (("acme", "Acme Corp", "professional"), ("globex", "Globex", "starter"))
ROLES = (Role.OWNER, Role.MEMBER, Role.VIEWER)


@dataclass(frozen=True, slots=True)
class DemoProvider:
    slug: str
    name: str
    kind: str
    protocol: str
    secret: str
    name_prefix: str  # what clients put before the model id


@dataclass(frozen=True, slots=True)
class DemoModel:
    model_id: str
    input_usd: str  # per 1M tokens
    output_usd: str
    quality: float
    context_window: int
    latency_ms: int
    mode: str = ModelMode.CHAT


PROVIDERS = (
    DemoProvider(
        "sim-openai",
        "Simulator (OpenAI)",
        ProviderKind.SIMULATOR,
        WireProtocol.OPENAI,
        "sim-platform-openai-key",
        "",
    ),
    DemoProvider(
        "sim-anthropic",
        "Simulator (Anthropic)",
        ProviderKind.ANTHROPIC,
        WireProtocol.ANTHROPIC,
        "sim-platform-anthropic-key",
        "anthropic/",
    ),
)
# Three price points per provider, so each power level has candidates under its cap
# (mean of input and output per 1K: eco $0.001, balanced $0.01, precision $0.10).
MODELS = {
    "sim-openai": (
        DemoModel("sim-eco", "0.10", "0.40", 0.4, 32_768, 300),  # $0.00025 / 1K
        DemoModel("sim-balanced", "1.00", "4.00", 0.65, 128_000, 600),  # $0.0025
        DemoModel("sim-precision", "10.00", "30.00", 0.9, 200_000, 1200),  # $0.02
        DemoModel("sim-embed", "0.02", "0", 0.5, 8_192, 100, ModelMode.EMBEDDING),
    ),
    "sim-anthropic": (
        DemoModel("claude-sim-haiku", "0.25", "1.25", 0.45, 200_000, 300),  # $0.00075
        DemoModel("claude-sim-sonnet", "3.00", "15.00", 0.75, 200_000, 600),  # $0.009
        DemoModel("claude-sim-opus", "15.00", "75.00", 0.92, 200_000, 1200),  # $0.045
    ),
}


class Command(BaseCommand):
    help = "Create demo tenants, users and simulator providers with a catalog (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print only JSON: the base URL and each tenant's API key and users.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        password = os.environ.get("SWITCHYARD_DEMO_PASSWORD") or DEFAULT_PASSWORD
        with transaction.atomic():
            admin = tenant_services.create_user(
                username=ADMIN_USERNAME, password=password, is_staff=True
            )
            # The simulator listens on loopback, which the SSRF guard refuses to providers
            # unless staff trust the host (for platform providers only).
            provider_services.allow_upstream_host(
                host=urlsplit(settings.SWITCHYARD_SIMULATOR_URL).hostname or "",
                note="The bundled simulator (seed_demo).",
                actor=admin,
            )
            for spec in PROVIDERS:
                self._seed_provider(spec, actor=admin)
            tenants = [
                self._seed_tenant(slug, name, plan, password=password, actor=admin)
                for slug, name, plan in TENANTS
            ]
        report = {"base_url": settings.SWITCHYARD_PUBLIC_URL, "tenants": tenants}
        if options["json"]:
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self._print_summary(report, password=password)

    def _seed_provider(self, spec: DemoProvider, *, actor: Any) -> Provider:
        provider = platform_providers().filter(slug=spec.slug).first()
        if provider is None:
            provider = provider_services.create_provider(
                name=spec.name,
                slug=spec.slug,
                kind=spec.kind,
                protocol=spec.protocol,
                base_url=f"{settings.SWITCHYARD_SIMULATOR_URL.rstrip('/')}/v1",
                # The simulator serves the demo models, not the vendor's real catalog.
                options={CATALOG_SYNC_OPTION: False},
                actor=actor,
            )
        if not platform_keys().filter(provider=provider).exists():
            provider_services.add_provider_key(
                provider=provider,
                secret=spec.secret,
                label="demo",
                status=KeyStatus.ACTIVE,
                actor=actor,
            )
        for model in MODELS[spec.slug]:
            input_usd, output_usd = Decimal(model.input_usd), Decimal(model.output_usd)
            ensure_catalog_model(
                provider=provider,
                model_id=model.model_id,
                actor=actor,
                name=spec.name_prefix + model.model_id,
                mode=model.mode,
                input_price_per_mtok=input_usd,
                output_price_per_mtok=output_usd,
                cached_input_price_per_mtok=input_usd / 10,
                context_window=model.context_window,
                max_output_tokens=min(16_384, model.context_window // 2),
                supports_tools=model.mode == ModelMode.CHAT,
                supports_vision=model.mode == ModelMode.CHAT and model.quality >= 0.6,
                supports_json=model.mode == ModelMode.CHAT,
                quality_score=model.quality,
                quality_overridden=True,
                observed_latency_ms=model.latency_ms,
                is_enabled=True,
                is_deprecated=False,
            )
        return provider

    def _seed_tenant(
        self, slug: str, name: str, plan_slug: str, *, password: str, actor: Any
    ) -> dict[str, Any]:
        tenant = platform_tenants().filter(slug=slug).first()
        if tenant is None:
            try:
                plan = Plan.objects.get(slug=plan_slug)
            except Plan.DoesNotExist as exc:
                raise CommandError(f"Plan {plan_slug!r} is missing; run migrate first.") from exc
            tenant = tenant_services.create_tenant(name=name, slug=slug, plan=plan, actor=actor)
        if not credit_entries(tenant_id=tenant.pk).filter(reason=DEMO_CREDITS_REASON).exists():
            # Prepaid plans need credits before the first request (402 otherwise).
            usage_services.grant_credits(
                tenant=tenant, amount_usd=DEMO_CREDITS_USD, reason=DEMO_CREDITS_REASON, actor=actor
            )
        users = []
        for role in ROLES:
            username = f"{slug}-{role}"
            user = tenant_services.create_user(
                username=username, password=password, email=f"{username}@example.com"
            )
            if not tenant_selectors.members(tenant=tenant).filter(user=user, role=role).exists():
                tenant_services.add_member(tenant=tenant, user=user, role=role, actor=actor)
            users.append({"username": username, "password": password, "role": str(role)})
        _, raw_key = tenant_services.create_api_key(tenant=tenant, name="demo key", actor=actor)
        return {"slug": slug, "api_key": raw_key, "users": users}

    def _print_summary(self, report: dict[str, Any], *, password: str) -> None:
        base_url = report["base_url"]
        lines = [
            f"Switchyard demo data is ready at {base_url}",
            f"  Admin: {base_url}/admin/  user {ADMIN_USERNAME!r}, password {password!r}",
            f"  Providers: {', '.join(p.slug for p in PROVIDERS)} "
            f"(the simulator at {settings.SWITCHYARD_SIMULATOR_URL})",
            "  Models: "
            + ", ".join(p.name_prefix + m.model_id for p in PROVIDERS for m in MODELS[p.slug]),
        ]
        for tenant in report["tenants"]:
            lines.append(f"Tenant {tenant['slug']}: API key {tenant['api_key']} (shown once)")
            lines += [
                f"  {u['username']} ({u['role']}), password {u['password']!r}"
                for u in tenant["users"]
            ]
        lines.append(
            f"Try: curl {base_url}/v1/chat/completions -H 'Authorization: Bearer <API key>' "
            '-H \'Content-Type: application/json\' -d \'{"model": "auto", "messages": '
            '[{"role": "user", "content": "Hello"}]}\''
        )
        self.stdout.write("\n".join(lines))
