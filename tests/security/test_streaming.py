"""Streams that go wrong on either side: cut, broken, refused, unbilled, abandoned. The client
always gets a well-formed answer (an SSE error event once streaming began, OpenAI's JSON
envelope before), every attempt is recorded and charged for what it produced, and the
reservation is settled to nothing."""

from __future__ import annotations

import time
from decimal import Decimal

import httpx
import orjson
import pytest

from routing.models import LLMSettings
from tests.factories import CatalogModelFactory
from tests.security.hostile_upstream import hostile_upstream
from tests.world_fixtures import add_provider, platform_key
from usage import counters
from usage.choices import Outcome
from usage.models import UsageRecord

MESSAGES = [{"role": "user", "content": "tell me a long story"}]


def streamed_model(world, name: str, path: str, *, quality: float = 0.9):
    """A model called `name` served by the simulator behind `path` (a fault, a latency)."""
    provider = add_provider(world.sim.url, name, path=path)
    platform_key(provider, f"sim-platform-{name}-0001")
    CatalogModelFactory(
        provider=provider,
        model_id="sim-eco",
        name=name,
        input_price_per_mtok=Decimal(1),
        output_price_per_mtok=Decimal(2),
        quality_score=quality,
    )
    return provider


def stream(world, model: str, **extra) -> tuple[httpx.Response, list[str]]:
    with httpx.stream(
        "POST",
        f"{world.base_url}/chat/completions",
        headers=world.headers(),
        json={"model": model, "messages": MESSAGES, "stream": True, "max_tokens": 50, **extra},
        timeout=15,
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    return response, lines


def events(lines: list[str]) -> list[dict]:
    return [orjson.loads(line[6:]) for line in lines if line.startswith("data: {")]


def records(world, count: int) -> list[UsageRecord]:
    deadline = time.monotonic() + 5
    while True:
        world.gateway.flush_usage()
        found = list(UsageRecord.objects.order_by("attempt", "pk"))
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def assert_nothing_reserved(world) -> None:
    _balance, reserved = counters.credit_keys(world.tenant.pk)
    redis = counters.sync_client()
    deadline = time.monotonic() + 5
    while int(redis.get(reserved) or 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert int(redis.get(reserved) or 0) == 0


@pytest.fixture
def world(world):
    yield world
    world.gateway.flush_usage()


def test_a_stream_the_upstream_cuts_ends_with_an_error_event_and_is_charged(world):
    streamed_model(world, "cut", "/fault/cut:after=4")
    world.gateway.sync()

    response, lines = stream(world, "cut")

    assert response.status_code == 200
    chunks = events(lines)
    assert any(c.get("choices") and c["choices"][0]["delta"].get("content") for c in chunks)
    assert chunks[-1]["error"]["code"] == "upstream_stream_error"
    assert "data: [DONE]" not in lines
    (record,) = records(world, 1)
    assert record.outcome == Outcome.STREAM_ERROR
    assert record.is_stream
    assert record.is_estimated
    assert record.output_tokens > 0
    assert record.cost_usd > 0
    assert_nothing_reserved(world)


def test_an_error_event_inside_the_stream_ends_it_and_is_recorded(world):
    streamed_model(world, "broken", "/fault/stream-error:after=2")
    world.gateway.sync()

    response, lines = stream(world, "broken")

    assert response.status_code == 200
    assert events(lines)[-1].get("error")
    assert "data: [DONE]" not in lines
    (record,) = records(world, 1)
    assert record.outcome == Outcome.STREAM_ERROR
    assert record.error
    assert_nothing_reserved(world)


def test_a_500_before_the_first_byte_falls_back_and_the_client_sees_one_clean_stream(world):
    streamed_model(world, "shared", "/fault/500", quality=1.0)
    fine = streamed_model(world, "fine", "")
    CatalogModelFactory(provider=fine, model_id="sim-balanced", name="shared", quality_score=0.1)
    world.gateway.sync()

    response, lines = stream(world, "shared")

    assert response.status_code == 200
    assert response.headers["x-switchyard-attempts"] == "2"
    assert lines.count("data: [DONE]") == 1
    assert not [c for c in events(lines) if "error" in c]
    failed, served = records(world, 2)
    assert (failed.outcome, served.outcome) == (Outcome.UPSTREAM_ERROR, Outcome.SUCCESS)
    assert failed.cost_usd == 0
    assert_nothing_reserved(world)


def no_failover(world) -> None:
    """Only the model asked for is tried (else the world's sim-eco steps in)."""
    LLMSettings.objects.create(tenant=world.tenant, auto_failover=False)


def test_when_the_only_candidate_fails_before_the_first_byte_the_answer_is_json(world):
    streamed_model(world, "down", "/fault/503")
    no_failover(world)
    world.gateway.sync()

    response, lines = stream(world, "down")

    assert response.status_code == 502
    assert response.headers["content-type"].startswith("application/json")
    error = orjson.loads("".join(lines))["error"]
    assert error["code"] == "all_providers_failed"
    assert [a["provider"] for a in error["attempts"]] == ["down"]
    (record,) = records(world, 1)
    assert record.outcome == Outcome.UPSTREAM_ERROR
    assert_nothing_reserved(world)


def test_a_400_on_a_stream_is_the_callers_json_error_without_fallback(world):
    streamed_model(world, "picky", "/fault/400", quality=1.0)
    fine = streamed_model(world, "fine", "")
    CatalogModelFactory(provider=fine, model_id="sim-balanced", name="picky", quality_score=0.1)
    world.gateway.sync()

    response, lines = stream(world, "picky")

    assert response.status_code == 400
    assert "error" in orjson.loads("".join(lines))
    assert len(world.sim.log) == 1
    (record,) = records(world, 1)
    assert record.outcome == Outcome.CLIENT_ERROR
    assert_nothing_reserved(world)


def test_a_client_leaving_before_the_first_byte_cancels_upstream_at_no_charge(world):
    streamed_model(world, "slow", "/latency/3000")
    world.gateway.sync()

    # The client gives up half a second in, while the upstream has not said a word.
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{world.base_url}/chat/completions",
            headers=world.headers(),
            json={"model": "slow", "messages": MESSAGES, "stream": True},
            timeout=httpx.Timeout(10, read=0.5),
        )

    (record,) = records(world, 1)
    assert record.outcome == Outcome.CLIENT_CANCELLED
    assert record.cost_usd == 0
    assert_nothing_reserved(world)


@pytest.mark.parametrize("fault", ["no-usage", "bad-usage"])
def test_a_stream_without_a_usable_usage_chunk_is_charged_by_counting(world, fault):
    streamed_model(world, "unbilled", f"/fault/{fault}")
    world.gateway.sync()

    response, lines = stream(world, "unbilled", stream_options={"include_usage": True})

    assert response.status_code == 200
    assert lines.count("data: [DONE]") == 1
    (record,) = records(world, 1)
    assert record.outcome == Outcome.SUCCESS
    assert record.is_estimated
    assert record.input_tokens > 0
    assert record.output_tokens > 0
    assert record.cost_usd > 0


def test_a_stream_answered_with_plain_json_is_no_success(world):
    with hostile_upstream(lambda path, key: (200, {"not": "an event stream"})) as url:
        provider = add_provider(url, "not-sse")
        platform_key(provider, "sim-platform-not-sse-0001")
        CatalogModelFactory(provider=provider, model_id="x", name="not-sse")
        no_failover(world)
        world.gateway.sync()

        response, lines = stream(world, "not-sse")

    # Refused before anything was relayed (a JSON 502), or ended by an error event: never
    # a stream that looks complete.
    assert response.status_code in (200, 502)
    assert "data: [DONE]" not in lines
    (record,) = records(world, 1)
    assert record.outcome != Outcome.SUCCESS
    assert_nothing_reserved(world)
