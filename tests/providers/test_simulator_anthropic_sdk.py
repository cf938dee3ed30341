"""The simulator through the official anthropic SDK: Messages API JSON and SSE events."""

from __future__ import annotations

import json
import math

import anthropic
import httpx
import pytest

from providers.simulator import SimulatorThread

QUESTION = "What is the capital of France?"  # ceil(30/4) + 3 = 11 prompt tokens
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "metric": {"type": "boolean"}},
        "required": ["city"],
    },
}
RAW_EVENTS = {
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
}


def user(text: str = QUESTION) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def client(sim: SimulatorThread) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.url, api_key="sk-ant-test", max_retries=0)


def test_message_json_answer_usage_and_log(sim, client):
    message = client.messages.create(model="sim-eco", max_tokens=100, messages=user())

    [block] = message.content
    assert block.type == "text"
    assert block.text.startswith(f"Simulated answer to: {QUESTION} lorem")
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.role == "assistant"
    assert message.id.startswith("msg_")
    assert message.usage.input_tokens == 11
    assert message.usage.output_tokens == 20
    assert message.usage.cache_read_input_tokens == 0
    [entry] = sim.log
    assert entry["path"] == "/v1/messages"
    assert entry["protocol"] == "anthropic"
    assert entry["api_key"] == "sk-ant-test"
    assert (entry["prompt_tokens"], entry["completion_tokens"]) == (11, 20)
    assert (entry["status"], entry["completed"]) == (200, True)


def test_system_prompt_is_counted_like_a_message(client):
    plain = client.messages.create(model="sim-eco", max_tokens=100, messages=user())
    with_system = client.messages.create(
        model="sim-eco",
        max_tokens=100,
        system=[{"type": "text", "text": "You are terse."}],  # 14 chars -> 3 + 4
        messages=user(),
    )

    assert with_system.usage.input_tokens == plain.usage.input_tokens + 7
    assert with_system.content[0].text == plain.content[0].text


def test_stream_events_in_anthropic_order_with_final_usage(sim, client):
    reference = client.messages.create(model="sim-eco", max_tokens=100, messages=user())
    sim.clear_log()

    with client.messages.stream(model="sim-eco", max_tokens=100, messages=user()) as stream:
        events = [event.type for event in stream if event.type in RAW_EVENTS]
        final = stream.get_final_message()

    deltas = events.count("content_block_delta")
    assert events == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert deltas == 20
    assert final.content[0].text == reference.content[0].text
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == 11
    assert final.usage.output_tokens == 20
    [entry] = sim.log
    assert (entry["stream"], entry["completed"], entry["completion_tokens"]) == (True, True, 20)


def test_raw_stream_start_usage_is_provisional(client):
    events = list(
        client.messages.create(model="sim-eco", max_tokens=100, messages=user(), stream=True)
    )

    assert events[0].type == "message_start"
    assert events[0].message.usage.input_tokens == 11
    assert events[0].message.usage.output_tokens == 1
    assert "ping" not in [e.type for e in events]  # the SDK swallows pings
    [message_delta] = [e for e in events if e.type == "message_delta"]
    assert message_delta.usage.output_tokens == 20


async def test_async_stream(sim):
    client = anthropic.AsyncAnthropic(base_url=sim.url, api_key="sk-ant-async", max_retries=0)

    async with client.messages.stream(model="sim-eco", max_tokens=7, messages=user()) as stream:
        text = await stream.get_final_text()
        final = await stream.get_final_message()

    assert text == "Simulated answer to: What is the capital"
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 7
    assert sim.log[-1]["api_key"] == "sk-ant-async"


def test_max_tokens_stop_reason(client):
    message = client.messages.create(model="sim-eco", max_tokens=4, messages=user())

    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 4
    assert message.content[0].text == "Simulated answer to: What"


def test_stop_sequences(client):
    message = client.messages.create(
        model="sim-eco", max_tokens=100, messages=user(), stop_sequences=["sit", "dolor"]
    )

    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "dolor"
    assert message.content[0].text.endswith("lorem ipsum ")
    assert message.usage.output_tokens == len(message.content[0].text.split())


def test_tool_use_json(sim, client):
    message = client.messages.create(
        model="sim-eco", max_tokens=100, messages=user("Weather?"), tools=[WEATHER_TOOL]
    )

    [block] = message.content
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_")
    assert block.name == "get_weather"
    assert block.input == {"city": "sim", "metric": True}
    assert message.stop_reason == "tool_use"
    arguments = json.dumps(block.input, separators=(",", ":"))
    assert message.usage.output_tokens == 1 + math.ceil(len(arguments) / 4)
    assert sim.log[-1]["completion_tokens"] == message.usage.output_tokens


def test_tool_use_stream_input_json_deltas(client):
    reference = client.messages.create(
        model="sim-eco", max_tokens=100, messages=user("Weather?"), tools=[WEATHER_TOOL]
    )

    with client.messages.stream(
        model="sim-eco", max_tokens=100, messages=user("Weather?"), tools=[WEATHER_TOOL]
    ) as stream:
        partials = [
            e.delta.partial_json
            for e in stream
            if e.type == "content_block_delta" and e.delta.type == "input_json_delta"
        ]
        final = stream.get_final_message()

    assert json.loads("".join(partials)) == reference.content[0].input
    assert final.content[0].type == "tool_use"
    assert final.content[0].input == reference.content[0].input
    assert final.content[0].id == reference.content[0].id
    assert final.stop_reason == "tool_use"
    assert final.usage.output_tokens == len(partials) == reference.usage.output_tokens


def test_tool_result_turn_gets_a_text_answer(client):
    first = client.messages.create(
        model="sim-eco", max_tokens=100, messages=user("Weather?"), tools=[WEATHER_TOOL]
    )
    messages = [
        *user("Weather?"),
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": first.content[0].id, "content": "sunny"}
            ],
        },
    ]

    second = client.messages.create(
        model="sim-eco", max_tokens=100, messages=messages, tools=[WEATHER_TOOL]
    )

    assert second.stop_reason == "end_turn"
    assert second.content[0].text.startswith("Simulated answer to: sunny")


def test_cache_tokens_split_the_prompt(sim, client):
    message = client.messages.create(
        model="sim-eco",
        max_tokens=100,
        messages=user(),
        extra_headers={"x-sim-cached-tokens": "6", "x-sim-cache-creation-tokens": "4"},
    )

    assert message.usage.cache_read_input_tokens == 6
    assert message.usage.cache_creation_input_tokens == 4
    assert message.usage.input_tokens == 11 - 6 - 4
    entry = sim.log[-1]
    assert (entry["prompt_tokens"], entry["cached_tokens"], entry["cache_creation_tokens"]) == (
        11,
        6,
        4,
    )


def test_bearer_auth_token_is_accepted_and_logged(sim):
    client = anthropic.Anthropic(base_url=sim.url, auth_token="oauth-token", max_retries=0)

    client.messages.create(model="sim-eco", max_tokens=10, messages=user())

    assert sim.log[-1]["api_key"] == "oauth-token"


def test_models_list_has_anthropic_shape(sim, client):
    models = list(client.models.list())
    raw = httpx.get(
        f"{sim.url}/v1/models", headers={"x-api-key": "k", "anthropic-version": "2023-06-01"}
    ).json()

    assert [m.id for m in models][:4] == ["sim-eco", "sim-balanced", "sim-precision", "sim-embed"]
    assert models[0].type == "model"
    assert models[0].display_name == "Sim Eco"
    assert raw["has_more"] is False
    assert raw["first_id"] == "sim-eco"
    assert raw["last_id"] == raw["data"][-1]["id"]
    assert sim.log[0]["protocol"] == "anthropic"


def test_count_tokens_matches_create(client):
    counted = client.messages.count_tokens(model="sim-eco", messages=user(), tools=[WEATHER_TOOL])
    message = client.messages.create(
        model="sim-eco", max_tokens=10, messages=user(), tools=[WEATHER_TOOL]
    )

    assert counted.input_tokens == message.usage.input_tokens


def test_missing_max_tokens_is_an_anthropic_400(sim):
    response = httpx.post(
        f"{sim.url}/v1/messages",
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        json={"model": "sim-eco", "messages": user()},
    )

    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }
