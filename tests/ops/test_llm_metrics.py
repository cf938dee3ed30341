"""The llm_* metrics move with real requests through the gateway to the simulator.

Each test scrapes /metrics over HTTP before and after and compares: the in-process gateway's
registry lives for the whole session, so only differences count.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
from django.utils import timezone

from providers.choices import HealthStatus
from providers.health import check_provider
from providers.models import Provider
from tests.factories import CatalogModelFactory
from tests.ops.scrape import label_values, scrape, total, value
from tests.world_fixtures import add_provider, platform_key
from usage.models import UsageRecord

MESSAGES = [{"role": "user", "content": "count me"}]


def post(world, model: str, *, key: str | None = None, **extra) -> httpx.Response:
    return httpx.post(
        f"{world.base_url}/chat/completions",
        headers=world.headers(key),
        json={"model": model, "messages": MESSAGES, **extra},
        timeout=30,
    )


class Delta:
    """Scrapes now; `delta(name, **labels)` is how far a series moved since."""

    def __init__(self, world) -> None:
        self.world = world
        _, self.before = scrape(world.gateway.url)

    def __call__(self, name: str, **labels: str) -> float:
        # Flushing on the server's loop also runs whatever the handlers had left to do.
        self.world.gateway.flush_usage()
        self.text, self.after = scrape(self.world.gateway.url)
        return total(self.after, name, **labels) - total(self.before, name, **labels)


def failing_first(world, fault: str, *, name: str = "shared", healthy: bool = True) -> Provider:
    """`name` served by a failing provider (cheapest, ranked first) and, if `healthy`, by
    sim-openai."""
    failing = add_provider(world.sim.url, "failing", path=f"/fault/{fault}")
    platform_key(failing, "sim-platform-failing-0003")
    CatalogModelFactory(
        provider=failing,
        model_id="sim-balanced",
        name=name,
        input_price_per_mtok=Decimal("0.01"),
        output_price_per_mtok=Decimal("0.01"),
        quality_score=0.9,
        observed_latency_ms=10,
    )
    if healthy:
        CatalogModelFactory(
            provider=world.openai,
            model_id="sim-shared",
            name=name,
            input_price_per_mtok=Decimal("1"),
            output_price_per_mtok=Decimal("4"),
            quality_score=0.5,
            observed_latency_ms=900,
        )
    world.gateway.sync()
    return failing


def test_a_completion_counts_once_with_its_duration_tokens_and_cost(world):
    delta = Delta(world)

    response = post(world, "sim-eco")

    assert response.status_code == 200, response.text
    labels = {"provider": "sim-openai", "model": "sim-eco", "power_level": "explicit"}
    assert delta("llm_requests_total", **labels, status="success") == 1
    assert delta("llm_requests_total") == 1
    record = UsageRecord.objects.get()
    assert record.input_tokens > 0
    assert record.output_tokens > 0
    assert delta("llm_tokens_total", provider="sim-openai", type="input") == record.input_tokens
    assert delta("llm_tokens_total", provider="sim-openai", type="output") == record.output_tokens
    assert record.cost_usd > 0
    assert delta("llm_cost_usd_total", provider="sim-openai") == pytest.approx(
        float(record.cost_usd)
    )
    assert delta("llm_request_duration_seconds_count", provider="sim-openai") == 1
    assert delta("llm_request_duration_seconds_sum", provider="sim-openai") > 0
    assert delta("llm_time_to_first_token_seconds_count") == 0  # not a stream
    assert delta("llm_fallbacks_total") == 0


def test_an_alias_is_labelled_with_its_power_level(world):
    delta = Delta(world)

    response = post(world, "eco")

    assert response.status_code == 200, response.text
    served = response.headers["x-switchyard-model"]
    assert delta("llm_requests_total", model=served, power_level="eco", status="success") == 1


@pytest.mark.parametrize(
    ("fault", "reason"), [("500", "5xx"), ("429:ra=2", "429"), ("refuse", "connection")]
)
def test_a_fallback_is_counted_with_both_providers_and_the_reason(world, fault, reason):
    failing_first(world, fault)
    delta = Delta(world)

    response = post(world, "shared")

    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-attempts"] == "2"
    pair = {"primary": "failing", "fallback": "sim-openai"}
    assert delta("llm_fallbacks_total", **pair, reason=reason) == 1
    assert delta("llm_fallbacks_total") == 1
    # The request counts once, for the provider that answered.
    assert delta("llm_requests_total") == 1
    assert delta("llm_requests_total", provider="sim-openai", model="shared", status="success") == 1


def test_a_request_every_candidate_failed_counts_as_an_upstream_error(world):
    failing_first(world, "500", name="doomed", healthy=False)
    state = world.gateway.state
    delta = Delta(world)

    # One attempt: the level's other models would otherwise stand in for it.
    state.max_attempts, saved = 1, state.max_attempts
    try:
        response = post(world, "doomed")
    finally:
        state.max_attempts = saved

    assert response.status_code == 502, response.text
    assert delta("llm_requests_total", provider="failing", status="upstream_error") == 1
    assert delta("llm_requests_total") == 1
    assert delta("llm_fallbacks_total") == 0
    assert delta("llm_request_duration_seconds_count", provider="failing") == 1


def test_a_stream_observes_its_time_to_first_token(world):
    delta = Delta(world)

    with httpx.stream(
        "POST",
        f"{world.base_url}/chat/completions",
        headers=world.headers(),
        json={"model": "sim-eco", "messages": MESSAGES, "stream": True},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        body = response.read()

    assert b"[DONE]" in body
    assert delta("llm_time_to_first_token_seconds_count", provider="sim-openai") == 1
    ttft = delta("llm_time_to_first_token_seconds_sum", provider="sim-openai")
    duration = delta("llm_request_duration_seconds_sum", provider="sim-openai")
    assert 0 < ttft <= duration
    assert delta("llm_requests_total", provider="sim-openai", status="success") == 1
    record = UsageRecord.objects.get()
    assert record.is_stream
    assert delta("llm_tokens_total", provider="sim-openai", type="output") == record.output_tokens


def test_a_model_name_a_client_makes_up_never_becomes_a_label(world):
    delta = Delta(world)
    made_up = "made-up-model-7f3a9c"

    response = post(world, made_up)

    assert response.status_code == 404
    refused = {"provider": "none", "model": "unknown", "power_level": "none"}
    assert delta("llm_requests_total", **refused, status="model_not_found") == 1
    assert made_up not in delta.text
    assert label_values(delta.after) - label_values(delta.before) <= {
        "none",
        "unknown",
        "model_not_found",
    }


def test_refusals_are_counted_by_class_without_the_credentials(world):
    canary = "sy-canaryCANARYcanary0123456789"
    delta = Delta(world)

    responses = [
        post(world, "sim-eco", key=canary),
        post(world, "sim-eco", messages="not a list"),
    ]

    assert [r.status_code for r in responses] == [401, 400]
    assert delta("llm_requests_total", status="auth_error") == 1
    assert delta("llm_requests_total", status="invalid_request") == 1
    assert canary not in delta.text


def test_no_secret_reaches_any_label_or_the_metrics_page(world):
    failing_first(world, "500")
    provider_secrets = ["sim-platform-openai-0001", "sim-platform-failing-0003"]
    user_canary = "sk-proj-UserCanary0123456789abcdef"
    delta = Delta(world)

    post(world, "sim-eco", user=user_canary)
    post(world, "shared")
    post(world, user_canary)
    post(world, "sim-eco", key="sk-" + world.api_key)

    assert delta("llm_requests_total") == 4
    for secret in [world.api_key, user_canary, *provider_secrets]:
        assert secret not in delta.text
    assert not any(v.startswith(("sk-", "sy-")) for v in label_values(delta.after, prefix=""))


def test_provider_health_is_read_from_the_last_check(world):
    before = timezone.now()

    check = check_provider(provider=world.openai, now=before)

    assert check is not None
    assert check.ok
    _, samples = scrape(world.gateway.url)
    assert value(samples, "llm_provider_health", provider="sim-openai") == 1.0
    checked = value(samples, "llm_provider_health_checked_timestamp_seconds", provider="sim-openai")
    assert checked == pytest.approx(before.timestamp())
    # Never checked (no check ran for it): nothing to report.
    assert ("llm_provider_health", frozenset({("provider", "sim-anthropic")})) not in samples

    Provider.objects.filter(pk=world.openai.pk).update(health_status=HealthStatus.DOWN)
    _, samples = scrape(world.gateway.url)
    assert value(samples, "llm_provider_health", provider="sim-openai") == 0.0

    Provider.objects.filter(pk=world.openai.pk).update(is_enabled=False)
    _, samples = scrape(world.gateway.url)
    assert ("llm_provider_health", frozenset({("provider", "sim-openai")})) not in samples
