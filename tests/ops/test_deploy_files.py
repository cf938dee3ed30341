"""deploy/: the alert rules and the dashboard query metrics and labels /metrics really has.

The names are taken from a real scrape after a streamed request that fell back and a
health check, so a renamed metric or label fails here, not on an operator's screen.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
import yaml
from django.utils import timezone

from providers.health import check_provider
from tests.factories import CatalogModelFactory
from tests.ops.scrape import scrape
from tests.world_fixtures import add_provider, platform_key

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
DASHBOARD = DEPLOY / "grafana" / "switchyard-dashboard.json"
METRIC = re.compile(r"\b((?:llm|django|switchyard)_[a-z0-9_]+)\b")
SELECTOR = re.compile(r"\b((?:llm|django|switchyard)_[a-z0-9_]+)\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|ignoring|on)\s*\(([^)]*)\)")


@pytest.fixture
def exposed(world) -> dict[str, set[str]]:
    """Sample name -> label names, from /metrics once every llm_* series exists."""
    failing = add_provider(world.sim.url, "failing", path="/fault/500")
    platform_key(failing, "sim-platform-failing-0003")
    for provider, model_id, price in ((failing, "sim-balanced", "0.01"), (world.openai, "x", "1")):
        CatalogModelFactory(
            provider=provider,
            model_id=model_id,
            name="shared",
            input_price_per_mtok=Decimal(price),
            output_price_per_mtok=Decimal(price),
        )
    world.gateway.sync()
    check_provider(provider=world.openai, now=timezone.now())
    with httpx.stream(
        "POST",
        f"{world.base_url}/chat/completions",
        headers=world.headers(),
        json={"model": "shared", "stream": True, "messages": [{"role": "user", "content": "x"}]},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        response.read()
    world.gateway.flush_usage()
    names: dict[str, set[str]] = {}
    for name, labels in scrape(world.gateway.url)[1]:
        names.setdefault(name, set()).update(key for key, _ in labels)
    return names


def alert_rules() -> dict[str, dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def dashboard_exprs() -> list[str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [target["expr"] for panel in panels for target in panel["targets"]]


def unknown_references(expr: str, exposed: dict[str, set[str]]) -> list[str]:
    problems = []
    names = set(METRIC.findall(expr))
    problems += [f"metric {name}" for name in names if name not in exposed]
    for name, matchers in SELECTOR.findall(expr):
        labels = set(MATCHER.findall(matchers))
        problems += [f"{name}{{{label}}}" for label in labels - exposed.get(name, set())]
    known = set().union(*(exposed.get(name, set()) for name in names)) | {"le"}
    for grouping in GROUPING.findall(expr):
        labels = {label.strip() for label in grouping.split(",") if label.strip()}
        problems += [f"label {label}" for label in labels - known]
    return problems


def test_the_three_alerts_of_the_issue_are_there_with_their_windows():
    rules = alert_rules()

    unhealthy = rules["SwitchyardProviderUnhealthy"]
    assert "llm_provider_health" in unhealthy["expr"]
    assert unhealthy["for"] == "5m"
    fallbacks = rules["SwitchyardFallbackRateHigh"]
    assert "llm_fallbacks_total" in fallbacks["expr"]
    assert "llm_requests_total" in fallbacks["expr"]
    assert re.search(r">\s*0\.10?\b", fallbacks["expr"])
    assert fallbacks["for"] == "10m"
    cost = rules["SwitchyardCostPerHourHigh"]
    assert "increase(llm_cost_usd_total[1h])" in cost["expr"]


def test_alerts_and_dashboard_query_only_what_metrics_exposes(exposed):
    assert {"llm_requests_total", "llm_fallbacks_total", "llm_provider_health"} <= set(exposed)
    exprs = [rule["expr"] for rule in alert_rules().values()] + dashboard_exprs()

    problems = {expr: unknown_references(expr, exposed) for expr in exprs}

    assert {expr: p for expr, p in problems.items() if p} == {}


def test_the_dashboard_has_the_panels_operators_asked_for():
    titles = " | ".join(p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]).lower()

    for wanted in (
        "requests/s by provider and status",
        "p50 / p95",
        "time to first token",
        "tokens/s by type",
        "cost per hour",
        "fallback rate",
        "provider health",
    ):
        assert wanted in titles


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed")
def test_promtool_accepts_the_rules_and_their_unit_tests_pass():
    checked = subprocess.run(  # noqa: S603 - promtool on our own files
        [shutil.which("promtool"), "check", "rules", str(ALERTS)], capture_output=True, text=True
    )
    tested = subprocess.run(  # noqa: S603
        [shutil.which("promtool"), "test", "rules", "alerts.test.yml"],
        cwd=ALERTS.parent,
        capture_output=True,
        text=True,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert tested.returncode == 0, tested.stdout + tested.stderr


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool is not installed")
def test_promtool_parses_every_dashboard_query(tmp_path):
    # Grafana's variables become what they stand for; each query, a recording rule to check.
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": expr.replace("$__rate_interval", "5m").replace("$provider", ".*"),
        }
        for i, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    checked = subprocess.run(  # noqa: S603
        [shutil.which("promtool"), "check", "rules", str(path)], capture_output=True, text=True
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
