"""The official OpenAI SDK against a live Switchyard, the simulator as the upstream."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest

from usage.choices import Outcome
from usage.models import UsageRecord

MESSAGES = [{"role": "user", "content": "Say hello to the gateway"}]


def client(world, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=world.base_url, api_key=world.api_key, max_retries=0, **kwargs)


def test_sync_json_completion_reports_provider_model_cost_and_records_usage(world):
    raw = client(world).chat.completions.with_raw_response.create(
        model="sim-balanced", messages=MESSAGES
    )
    completion = raw.parse()

    assert completion.choices[0].message.content
    assert raw.headers["x-switchyard-provider"] == "sim-openai"
    assert raw.headers["x-switchyard-model"] == "sim-balanced"
    assert raw.headers["x-switchyard-attempts"] == "1"
    request_id = raw.headers["x-request-id"]
    world.gateway.flush_usage()
    record = UsageRecord.objects.get()
    assert record.request_id.hex == request_id
    assert record.outcome == Outcome.SUCCESS
    assert record.tenant_id == world.tenant.pk
    assert record.api_key_id == world.key_row.pk
    upstream = world.sim.log[-1]
    assert upstream["api_key"] == "sim-platform-openai-0001"
    assert record.input_tokens + record.cached_tokens == upstream["prompt_tokens"]
    assert (
        record.output_tokens == upstream["completion_tokens"] == completion.usage.completion_tokens
    )
    expected = (
        Decimal(record.input_tokens) * Decimal("1.00")
        + Decimal(record.output_tokens) * Decimal("4.00")
    ) / 1_000_000
    assert record.cost_usd == expected.quantize(Decimal("0.00000001"))
    assert Decimal(raw.headers["x-switchyard-cost-usd"]) == record.cost_usd


def test_sync_stream_with_usage_passes_chunks_and_the_usage_chunk(world):
    stream = client(world).chat.completions.create(
        model="sim-balanced", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    world.gateway.flush_usage()
    record = UsageRecord.objects.get()
    assert record.is_stream
    assert not record.is_estimated
    assert record.output_tokens == chunks[-1].usage.completion_tokens
    assert record.cost_usd > 0


def test_stream_without_include_usage_hides_the_usage_chunk_but_still_charges(world):
    chunks = list(
        client(world).chat.completions.create(model="sim-balanced", messages=MESSAGES, stream=True)
    )

    assert all(c.usage is None for c in chunks)
    assert world.sim.log[-1]["stream"] is True
    world.gateway.flush_usage()
    record = UsageRecord.objects.get()
    assert record.output_tokens == world.sim.log[-1]["completion_tokens"]
    assert record.cost_usd > 0
    assert not record.is_estimated


async def test_async_json_and_stream(world):
    aclient = openai.AsyncOpenAI(base_url=world.base_url, api_key=world.api_key, max_retries=0)
    completion = await aclient.chat.completions.create(model="auto", messages=MESSAGES)
    stream = await aclient.chat.completions.create(
        model="auto", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    await aclient.close()

    assert completion.choices[0].message.content
    assert chunks[-1].usage.total_tokens > 0


def test_tool_calls_pass_through(world):
    completion = client(world).chat.completions.create(
        model="sim-balanced",
        messages=MESSAGES,
        tools=[
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
                },
            }
        ],
    )

    assert completion.choices[0].finish_reason == "tool_calls"
    assert completion.choices[0].message.tool_calls[0].function.name == "lookup"


def test_anthropic_provider_is_translated_for_an_openai_client(world):
    raw = client(world).chat.completions.with_raw_response.create(
        model="anthropic/claude-sim-sonnet",
        messages=[{"role": "system", "content": "Be brief."}, *MESSAGES],
    )
    completion = raw.parse()

    assert raw.headers["x-switchyard-provider"] == "sim-anthropic"
    assert completion.choices[0].message.content
    assert world.sim.log[-1]["protocol"] == "anthropic"
    assert completion.usage.prompt_tokens == world.sim.log[-1]["prompt_tokens"]


def test_models_lists_aliases_and_keyed_catalog_models(world):
    ids = {m.id for m in client(world).models.list()}

    assert {"auto", "eco", "balanced", "precision", "sim-eco", "anthropic/claude-sim-sonnet"} <= ids


def test_embeddings_are_routed_to_an_embedding_model(world):
    result = client(world).embeddings.create(model="sim-embed", input=["a", "b"])

    assert len(result.data) == 2
    world.gateway.flush_usage()
    assert UsageRecord.objects.get().model_id == world.models["sim-embed"].pk


# SPEC's score: under Balanced (0.4 / 0.4 / 0.2, cap $0.01) the cheap and fast sim-eco
# (0.858) beats sim-balanced (0.806); under Precision (0.1 / 0.3 / 0.6) Sonnet (0.847 plus
# the 0.1 bonus of Precision's preferred kind, anthropic) beats sim-precision (0.884).
@pytest.mark.parametrize(
    ("alias", "expected"),
    [("eco", "sim-eco"), ("balanced", "sim-eco"), ("precision", "anthropic/claude-sim-sonnet")],
)
def test_each_alias_picks_the_best_scoring_model_of_its_level(world, alias, expected):
    raw = client(world).chat.completions.with_raw_response.create(model=alias, messages=MESSAGES)

    assert raw.headers["x-switchyard-model"] == expected
