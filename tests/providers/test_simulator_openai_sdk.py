"""The simulator through the official openai SDK: it must look like the real API."""

from __future__ import annotations

import json
import math

import openai
import pytest

from providers.simulator import SimulatorThread

QUESTION = "What is the capital of France?"  # 30 chars: ceil(30/4) + 3 = 11 prompt tokens
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer"},
            },
            "required": ["city"],
        },
    },
}


def user(text: str = QUESTION) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


@pytest.fixture
def client(sim: SimulatorThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.url}/v1", api_key="sk-test-openai", max_retries=0)


@pytest.fixture
def aclient(sim: SimulatorThread) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{sim.url}/v1", api_key="sk-test-async", max_retries=0)


def test_chat_json_answer_usage_and_log(sim, client):
    completion = client.chat.completions.create(model="sim-eco", messages=user())

    choice = completion.choices[0]
    assert choice.message.content.startswith(f"Simulated answer to: {QUESTION} lorem ipsum")
    assert len(choice.message.content.split()) == 20
    assert choice.finish_reason == "stop"
    assert completion.model == "sim-eco"
    assert completion.usage.prompt_tokens == 11
    assert completion.usage.completion_tokens == 20
    assert completion.usage.total_tokens == 31
    assert completion.usage.prompt_tokens_details.cached_tokens == 0
    [entry] = sim.log
    assert entry["path"] == "/v1/chat/completions"
    assert entry["protocol"] == "openai"
    assert entry["api_key"] == "sk-test-openai"
    assert entry["model"] == "sim-eco"
    assert (entry["prompt_tokens"], entry["completion_tokens"]) == (11, 20)
    assert (entry["status"], entry["completed"], entry["stream"]) == (200, True, False)
    assert entry["response_id"] == completion.id


def test_same_input_gives_same_output(client):
    first = client.chat.completions.create(model="sim-eco", messages=user("ping"))
    second = client.chat.completions.create(model="sim-eco", messages=user("ping"))
    other = client.chat.completions.create(model="sim-eco", messages=user("pong"))

    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage.model_dump() == second.usage.model_dump()
    assert other.choices[0].message.content != first.choices[0].message.content


def test_prompt_token_rule_counts_parts_system_and_tools(client):
    messages = [
        {"role": "system", "content": "Be brief."},  # 9 chars -> 3 + 3
        {"role": "user", "content": [{"type": "text", "text": "12345678"}]},  # 3 + 2
    ]
    tools_tokens = math.ceil(len(json.dumps([WEATHER_TOOL], separators=(",", ":"))) / 4)

    plain = client.chat.completions.create(model="m", messages=messages)
    with_tools = client.chat.completions.create(
        model="m", messages=messages, tools=[WEATHER_TOOL], tool_choice="none"
    )

    assert plain.usage.prompt_tokens == 6 + 5
    assert with_tools.usage.prompt_tokens == 11 + tools_tokens
    assert with_tools.choices[0].message.tool_calls is None


async def test_async_client_json(sim, aclient):
    completion = await aclient.chat.completions.create(model="sim-balanced", messages=user())

    assert completion.choices[0].message.content.startswith("Simulated answer to:")
    assert sim.log[-1]["api_key"] == "sk-test-async"
    assert sim.log[-1]["completion_tokens"] == completion.usage.completion_tokens == 20


def test_stream_with_include_usage(sim, client):
    reference = client.chat.completions.create(model="sim-eco", messages=user())
    sim.clear_log()

    chunks = list(
        client.chat.completions.create(
            model="sim-eco",
            messages=user(),
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content for c in content_chunks) == (
        reference.choices[0].message.content
    )
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage.prompt_tokens == 11
    assert usage_chunk.usage.completion_tokens == len(content_chunks) == 20
    assert all(c.usage is None for c in chunks[:-1])
    [entry] = sim.log
    assert entry["stream"] is True
    assert entry["completed"] is True
    assert entry["completion_tokens"] == usage_chunk.usage.completion_tokens


def test_stream_without_include_usage_has_no_usage(client):
    chunks = list(client.chat.completions.create(model="sim-eco", messages=user(), stream=True))

    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_async_stream(sim, aclient):
    stream = await aclient.chat.completions.create(
        model="sim-eco", messages=user(), stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]

    assert chunks[-1].usage.completion_tokens == 20
    assert sim.log[-1]["completed"] is True


@pytest.mark.parametrize("param", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_caps_output_with_finish_length(sim, client, param):
    completion = client.chat.completions.create(model="sim-eco", messages=user(), **{param: 5})

    assert completion.choices[0].message.content == "Simulated answer to: What is"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5
    assert sim.log[-1]["completion_tokens"] == 5


def test_max_tokens_above_answer_length_is_a_normal_stop(client):
    completion = client.chat.completions.create(model="sim-eco", messages=user(), max_tokens=20)

    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == 20


def test_output_tokens_header_sets_answer_length(client):
    completion = client.chat.completions.create(
        model="sim-eco", messages=user(), extra_headers={"x-sim-output-tokens": "50"}
    )

    assert completion.usage.completion_tokens == 50
    assert len(completion.choices[0].message.content.split()) == 50


def test_stop_sequence_cuts_the_answer(client):
    completion = client.chat.completions.create(model="sim-eco", messages=user(), stop=["dolor"])

    content = completion.choices[0].message.content
    assert content == f"Simulated answer to: {QUESTION} lorem ipsum "
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.completion_tokens == len(content.split()) == 11


def test_tool_call_json(sim, client):
    completion = client.chat.completions.create(
        model="sim-eco", messages=user("Weather in Paris?"), tools=[WEATHER_TOOL]
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    arguments = call.function.arguments
    assert json.loads(arguments) == {"city": "sim", "unit": "celsius", "days": 1}
    assert completion.usage.completion_tokens == 1 + math.ceil(len(arguments) / 4)
    assert sim.log[-1]["completion_tokens"] == completion.usage.completion_tokens


def test_tool_call_stream_deltas_rebuild_the_call(client):
    reference = client.chat.completions.create(
        model="sim-eco", messages=user("Weather?"), tools=[WEATHER_TOOL]
    )
    chunks = list(
        client.chat.completions.create(
            model="sim-eco",
            messages=user("Weather?"),
            tools=[WEATHER_TOOL],
            stream=True,
            stream_options={"include_usage": True},
        )
    )

    deltas = [
        c.choices[0].delta.tool_calls[0]
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
    ]
    assert deltas[0].id == reference.choices[0].message.tool_calls[0].id
    assert deltas[0].function.name == "get_weather"
    assert all(d.index == 0 for d in deltas)
    assert all(d.id is None and d.function.name is None for d in deltas[1:])
    arguments = "".join(d.function.arguments for d in deltas)
    assert arguments == reference.choices[0].message.tool_calls[0].function.arguments
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.completion_tokens == len(deltas) == reference.usage.completion_tokens


def test_tool_choice_names_the_function(client):
    other = {"type": "function", "function": {"name": "noop", "parameters": {}}}
    completion = client.chat.completions.create(
        model="sim-eco",
        messages=user(),
        tools=[other, WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )

    assert completion.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_after_a_tool_result_the_model_answers_in_text(client):
    first = client.chat.completions.create(
        model="sim-eco", messages=user("Weather?"), tools=[WEATHER_TOOL]
    )
    call = first.choices[0].message.tool_calls[0]
    messages = [
        *user("Weather?"),
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]

    second = client.chat.completions.create(
        model="sim-eco", messages=messages, tools=[WEATHER_TOOL]
    )

    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content.startswith("Simulated answer to: Weather?")


def test_cached_tokens_header(sim, client):
    completion = client.chat.completions.create(
        model="sim-eco", messages=user(), extra_headers={"x-sim-cached-tokens": "8"}
    )

    assert completion.usage.prompt_tokens_details.cached_tokens == 8
    assert completion.usage.prompt_tokens == 11
    assert sim.log[-1]["cached_tokens"] == 8


def test_embeddings_default_base64_and_float_agree(sim, client):
    default = client.embeddings.create(model="sim-embed", input=["alpha", "beta"])
    floats = client.embeddings.create(
        model="sim-embed", input=["alpha", "beta"], encoding_format="float"
    )

    assert [len(d.embedding) for d in default.data] == [8, 8]
    for packed, plain in zip(default.data, floats.data, strict=True):
        assert packed.embedding == pytest.approx(plain.embedding, abs=1e-6)
    assert math.isclose(sum(v * v for v in floats.data[0].embedding), 1.0, abs_tol=1e-4)
    assert floats.data[0].embedding != floats.data[1].embedding
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 2 + 1
    assert sim.log[-1]["prompt_tokens"] == 3
    assert sim.log[-1]["api_key"] == "sk-test-openai"


def test_embeddings_are_deterministic_and_honour_dimensions(client):
    first = client.embeddings.create(model="sim-embed", input="same", encoding_format="float")
    again = client.embeddings.create(model="sim-embed", input="same", encoding_format="float")
    wide = client.embeddings.create(model="sim-embed", input="same", dimensions=64)

    assert first.data[0].embedding == again.data[0].embedding
    assert len(wide.data[0].embedding) == 64


def test_models_list_and_retrieve(sim, client):
    ids = [model.id for model in client.models.list()]
    model = client.models.retrieve("sim-precision")

    assert ids[:4] == ["sim-eco", "sim-balanced", "sim-precision", "sim-embed"]
    assert model.id == "sim-precision"
    assert model.object == "model"
    assert sim.log[0]["path"] == "/v1/models"
    assert sim.log[0]["api_key"] == "sk-test-openai"


def test_azure_client_uses_api_key_header_and_deployment_path(sim):
    client = openai.AzureOpenAI(
        azure_endpoint=sim.url,
        azure_deployment="sim-eco",
        api_version="2024-10-21",
        api_key="azure-key",
        max_retries=0,
    )

    completion = client.chat.completions.create(model="sim-eco", messages=user())

    assert completion.usage.completion_tokens == 20
    [entry] = sim.log
    assert entry["path"] == "/openai/deployments/sim-eco/chat/completions"
    assert entry["api_key"] == "azure-key"
    assert entry["model"] == "sim-eco"


def test_invalid_request_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="sim-eco", messages=[])

    assert caught.value.body["type"] == "invalid_request_error"
    assert "messages" in caught.value.body["message"]
