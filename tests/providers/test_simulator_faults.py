"""Every injected fault, seen through the official SDKs (max_retries=0) and raw HTTP."""

from __future__ import annotations

import asyncio
import time

import anthropic
import httpx
import openai
import orjson
import pytest

from providers.simulator import SimulatorThread

MESSAGES = [{"role": "user", "content": "hello"}]


@pytest.fixture
def oai(sim: SimulatorThread) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sim.url}/v1", api_key="sk-fault", max_retries=0, timeout=5)


@pytest.fixture
def ant(sim: SimulatorThread) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=sim.url, api_key="sk-fault", max_retries=0, timeout=5)


def chat(client: openai.OpenAI, fault: str | None = None, headers=None, **kwargs):
    headers = {**({"x-sim-fault": fault} if fault else {}), **(headers or {})}
    return client.chat.completions.create(
        model="sim-eco", messages=MESSAGES, extra_headers=headers, **kwargs
    )


def message(client: anthropic.Anthropic, fault: str | None = None, **kwargs):
    headers = {"x-sim-fault": fault} if fault else {}
    return client.messages.create(
        model="sim-eco", max_tokens=100, messages=MESSAGES, extra_headers=headers, **kwargs
    )


def raw_chat(sim: SimulatorThread, fault: str | None = None, **body) -> dict:
    """httpx keyword arguments for a chat completion, bypassing the SDK."""
    headers = {"authorization": "Bearer sk-raw"}
    if fault:
        headers["x-sim-fault"] = fault
    return {
        "url": f"{sim.url}/v1/chat/completions",
        "headers": headers,
        "json": {"model": "sim-eco", "messages": MESSAGES, **body},
    }


def collect(items, into: list) -> None:
    """Append as items arrive, so what came before a failure stays visible."""
    for item in items:
        into.append(item)


# -- status codes ----------------------------------------------------------------------

STATUS_CASES = [
    (400, openai.BadRequestError, anthropic.BadRequestError, "invalid_request_error"),
    (401, openai.AuthenticationError, anthropic.AuthenticationError, "authentication_error"),
    (403, openai.PermissionDeniedError, anthropic.PermissionDeniedError, "permission_error"),
    (408, openai.APIStatusError, anthropic.RequestTimeoutError, "timeout_error"),
    (409, openai.ConflictError, anthropic.ConflictError, "invalid_request_error"),
    (429, openai.RateLimitError, anthropic.RateLimitError, "rate_limit_error"),
    (500, openai.InternalServerError, anthropic.InternalServerError, "api_error"),
    (502, openai.InternalServerError, anthropic.InternalServerError, "api_error"),
    (503, openai.InternalServerError, anthropic.ServiceUnavailableError, "api_error"),
]


@pytest.mark.parametrize(
    ("status", "openai_error", "anthropic_error", "anthropic_type"), STATUS_CASES
)
def test_status_faults_raise_the_sdk_error(
    sim, oai, ant, status, openai_error, anthropic_error, anthropic_type
):
    with pytest.raises(openai_error) as openai_caught:
        chat(oai, str(status))
    with pytest.raises(anthropic_error) as anthropic_caught:
        message(ant, str(status))

    assert type(openai_caught.value) is openai_error
    assert openai_caught.value.status_code == status
    assert openai_caught.value.body["message"] == f"simulated {status} fault"
    assert set(openai_caught.value.body) == {"message", "type", "param", "code"}
    assert type(anthropic_caught.value) is anthropic_error
    assert anthropic_caught.value.body == {
        "type": "error",
        "error": {"type": anthropic_type, "message": f"simulated {status} fault"},
    }
    openai_entry, anthropic_entry = sim.log
    assert (openai_entry["status"], openai_entry["fault"]) == (status, str(status))
    assert (anthropic_entry["status"], anthropic_entry["protocol"]) == (status, "anthropic")
    assert openai_entry["completion_tokens"] == anthropic_entry["completion_tokens"] == 0


def test_retry_after_parameter(sim, oai):
    with pytest.raises(openai.RateLimitError) as caught:
        chat(oai, "429:ra=2")

    assert caught.value.response.headers["retry-after"] == "2"
    assert sim.log[-1]["fault"] == "429:ra=2"


def test_unknown_fault_spec_is_a_loud_400(sim, oai):
    with pytest.raises(openai.BadRequestError, match="unknown fault"):
        chat(oai, "teapot")

    assert sim.log[-1]["fault"] == "teapot"


# -- auth ------------------------------------------------------------------------------


def test_missing_key_is_401_in_each_protocol_shape(sim):
    openai_response = httpx.post(**{**raw_chat(sim), "headers": {}})
    anthropic_response = httpx.post(
        f"{sim.url}/v1/messages",
        json={"model": "m", "max_tokens": 5, "messages": MESSAGES},
    )

    assert openai_response.status_code == anthropic_response.status_code == 401
    assert openai_response.json()["error"]["code"] == "missing_api_key"
    assert anthropic_response.json()["error"]["type"] == "authentication_error"
    assert [e["api_key"] for e in sim.log] == [None, None]


def test_sim_bad_key_is_rejected_as_invalid(sim):
    client = openai.OpenAI(base_url=f"{sim.url}/v1", api_key="sim-bad-byok", max_retries=0)

    with pytest.raises(openai.AuthenticationError) as caught:
        chat(client)

    assert caught.value.code == "invalid_api_key"
    assert sim.log[-1]["api_key"] == "sim-bad-byok"
    assert sim.log[-1]["status"] == 401


# -- where a fault comes from ----------------------------------------------------------


def test_path_prefix_fault_applies_to_every_request(sim):
    client = openai.OpenAI(base_url=f"{sim.url}/fault/503/v1", api_key="k", max_retries=0)

    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            chat(client)
    with pytest.raises(openai.InternalServerError):
        client.models.list()

    assert [e["status"] for e in sim.log] == [503, 503, 503]
    assert sim.log[0]["path"] == "/fault/503/v1/chat/completions"


def test_anthropic_base_url_with_fault_prefix(sim):
    client = anthropic.Anthropic(base_url=f"{sim.url}/fault/429", api_key="k", max_retries=0)

    with pytest.raises(anthropic.RateLimitError):
        message(client)

    assert sim.log[-1]["path"] == "/fault/429/v1/messages"


def test_script_is_consumed_fifo_by_completion_requests_only(sim, oai):
    sim.script(["500", "ok", "429"])

    with pytest.raises(openai.InternalServerError):
        chat(oai)
    oai.models.list()  # not a completion: does not consume the script
    assert chat(oai).usage.completion_tokens == 20
    with pytest.raises(openai.RateLimitError):
        chat(oai)
    chat(oai)

    assert [e["status"] for e in sim.log] == [500, 200, 200, 429, 200]
    assert [e["fault"] for e in sim.log] == ["500", None, None, "429", None]
    assert sim.pending_script == []


def test_header_fault_wins_over_the_script(sim, oai):
    sim.script(["500"])

    with pytest.raises(openai.ConflictError):
        chat(oai, "409")

    assert sim.pending_script == ["500"]


def test_script_over_http(sim, oai):
    queued = httpx.post(f"{sim.url}/_sim/script", json={"faults": ["502", "ok"]})
    rejected = httpx.post(f"{sim.url}/_sim/script", json={"faults": ["nope"]})
    assert httpx.get(f"{sim.url}/_sim/script").json() == {"faults": ["502", "ok"]}

    with pytest.raises(openai.InternalServerError):
        chat(oai)
    httpx.delete(f"{sim.url}/_sim/script")
    chat(oai, None)

    assert queued.json() == {"queued": 2}
    assert rejected.status_code == 400
    assert sim.pending_script == []
    with pytest.raises(ValueError, match="unknown fault"):
        sim.script(["bogus"])


def test_model_suffix_selects_a_fault(sim, oai):
    with pytest.raises(openai.InternalServerError):
        oai.chat.completions.create(model="sim-eco@fault=500", messages=MESSAGES)

    assert sim.log[-1]["fault"] == "500"
    assert sim.log[-1]["model"] == "sim-eco@fault=500"


# -- connection-level faults -----------------------------------------------------------


def test_refuse_closes_without_answer(sim, oai, ant):
    with pytest.raises(openai.APIConnectionError):
        chat(oai, "refuse")
    with pytest.raises(anthropic.APIConnectionError):
        message(ant, "refuse")

    assert [(e["status"], e["completed"]) for e in sim.log] == [(None, False), (None, False)]


def test_hang_times_out(sim, oai):
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        chat(oai, "hang", timeout=0.3)

    assert time.monotonic() - started < 2
    entry = sim.log[-1]
    assert (entry["status"], entry["completed"], entry["fault"]) == (None, False, "hang")


def test_html_error_page(sim, oai, ant):
    with pytest.raises(openai.InternalServerError) as caught:
        chat(oai, "html")
    with pytest.raises(anthropic.InternalServerError) as anthropic_caught:
        message(ant, "html")

    assert caught.value.response.headers["content-type"].startswith("text/html")
    assert caught.value.body.startswith("<!DOCTYPE html>")
    assert "<h1>Internal Server Error</h1>" in anthropic_caught.value.message


def test_truncated_body(sim, oai):
    with pytest.raises(openai.APIConnectionError):
        chat(oai, "truncated")
    with httpx.stream("POST", **raw_chat(sim, "truncated")) as response:
        declared = int(response.headers["content-length"])
        pieces: list[bytes] = []
        with pytest.raises(httpx.RemoteProtocolError):
            collect(response.iter_raw(), pieces)
        received = b"".join(pieces)

    assert response.status_code == 200
    assert 0 < len(received) < declared
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(received)
    assert [(e["status"], e["completed"]) for e in sim.log] == [(200, False), (200, False)]


def test_empty_body(sim, oai):
    response = httpx.post(**raw_chat(sim, "empty"))
    with pytest.raises(ValueError, match="Expecting value"):
        chat(oai, "empty")

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-type"] == "application/json"


def test_oversized_body_is_valid_and_huge(sim, oai):
    response = httpx.post(**raw_chat(sim, "oversized"))
    small = chat(oai, "oversized:mb=1")

    assert len(response.content) > 20 * 1024 * 1024
    assert len(response.json()["choices"][0]["message"]["content"]) == 20 * 1024 * 1024
    assert len(small.choices[0].message.content) == 1024 * 1024
    assert small.usage.completion_tokens == 1  # one giant word
    assert sim.log[-1]["completed"] is True


def test_drip_is_slow_but_correct(sim, oai):
    reference = chat(oai)

    started = time.monotonic()
    dripped = chat(oai, "drip:ms=600,bytes=64")
    elapsed = time.monotonic() - started

    assert elapsed >= 0.5
    assert dripped.choices[0].message.content == reference.choices[0].message.content
    assert dripped.usage == reference.usage
    assert sim.log[-1]["completed"] is True
    assert sim.log[-1]["fault"] == "drip:ms=600,bytes=64"


def test_drip_on_a_stream(sim, ant):
    started = time.monotonic()
    with ant.messages.stream(
        model="sim-eco",
        max_tokens=100,
        messages=MESSAGES,
        extra_headers={"x-sim-fault": "drip:ms=300,bytes=200"},
    ) as stream:
        final = stream.get_final_message()

    assert time.monotonic() - started >= 0.25
    assert final.usage.output_tokens == 20
    assert sim.log[-1]["completed"] is True


def test_redirect_is_a_302_to_the_logged_target(sim, oai):
    response = httpx.post(**raw_chat(sim, "redirect"))
    chat(oai, "redirect")  # the SDK follows redirects: the target hit shows up in the log

    assert response.status_code == 302
    assert response.headers["location"] == f"{sim.url}/_sim/redirect-target"
    paths = [e["path"] for e in sim.log]
    assert paths == ["/v1/chat/completions", "/v1/chat/completions", "/_sim/redirect-target"]


# -- stream faults ---------------------------------------------------------------------


def test_cut_stream_has_no_done_and_is_logged_incomplete(sim, oai):
    seen = []
    with pytest.raises(openai.APIConnectionError):
        collect(chat(oai, "cut", stream=True, stream_options={"include_usage": True}), seen)
    lines = []
    with (
        httpx.stream("POST", **raw_chat(sim, "cut:after=4", stream=True)) as response,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        collect(response.iter_lines(), lines)

    assert len(seen) == 3  # role chunk + 2 words, then the connection drops
    lines = [line for line in lines if line]
    assert len(lines) == 4
    assert "data: [DONE]" not in lines
    first, second = sim.log
    assert (first["status"], first["completed"], first["completion_tokens"]) == (200, False, 2)
    assert (second["completed"], second["completion_tokens"]) == (False, 3)


def test_cut_anthropic_stream_never_reaches_message_stop(sim, ant):
    events = []
    with (
        pytest.raises(Exception) as caught,  # noqa: PT011 - this SDK path does not wrap it
        ant.messages.stream(
            model="sim-eco",
            max_tokens=100,
            messages=MESSAGES,
            extra_headers={"x-sim-fault": "cut:after=5"},
        ) as stream,
    ):
        collect((event.type for event in stream), events)

    assert type(caught.value).__name__ in ("APIConnectionError", "RemoteProtocolError")
    assert "message_stop" not in events
    assert sim.log[-1]["completed"] is False
    assert sim.log[-1]["completion_tokens"] == 2


def test_cut_non_streamed_is_truncated(sim, oai):
    with pytest.raises(openai.APIConnectionError):
        chat(oai, "cut")

    assert sim.log[-1]["completed"] is False


def test_endless_stream_keeps_going_until_the_client_leaves(sim, oai):
    stream = chat(oai, "endless:ms=5", stream=True)
    words = []
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            words.append(chunk.choices[0].delta.content)
        if len(words) == 40:  # twice the normal answer length
            break
    stream.close()
    time.sleep(0.1)

    assert "".join(words).startswith("Simulated answer to: hello")
    entry = sim.log[-1]
    assert entry["completed"] is False
    assert entry["completion_tokens"] >= 40
    tokens_then = entry["completion_tokens"]
    time.sleep(0.1)
    assert sim.log[-1]["completion_tokens"] == tokens_then  # it noticed the client left


async def test_endless_non_streamed_body_never_completes(sim):
    client = openai.AsyncOpenAI(base_url=f"{sim.url}/v1", api_key="k", max_retries=0, timeout=5)

    # A per-read timeout never fires (a byte arrives every 20 ms): only a deadline helps.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(chat_async(client, "endless:ms=20"), 0.4)
    await asyncio.sleep(0.1)

    entry = sim.log[-1]
    assert (entry["status"], entry["completed"]) == (200, False)


async def chat_async(client: openai.AsyncOpenAI, fault: str):
    return await client.chat.completions.create(
        model="sim-eco", messages=MESSAGES, extra_headers={"x-sim-fault": fault}
    )


def test_endless_anthropic_stream(sim, ant):
    deltas = 0
    with ant.messages.stream(
        model="sim-eco",
        max_tokens=100,
        messages=MESSAGES,
        extra_headers={"x-sim-fault": "endless:ms=5"},
    ) as stream:
        for event in stream:
            deltas += event.type == "content_block_delta"
            if deltas == 30:
                break

    assert deltas == 30  # past max_tokens' worth of an ordinary answer, no message_stop
    assert sim.log[-1]["completed"] is False


def test_stream_error_event(sim, oai, ant):
    with pytest.raises(openai.APIError, match="simulated stream error") as caught:
        list(chat(oai, "stream-error", stream=True))
    with (
        pytest.raises(anthropic.APIStatusError) as anthropic_caught,
        ant.messages.stream(
            model="sim-eco",
            max_tokens=100,
            messages=MESSAGES,
            extra_headers={"x-sim-fault": "stream-error"},
        ) as stream,
    ):
        stream.get_final_message()

    assert not isinstance(caught.value, openai.APIStatusError)  # a mid-stream error event
    assert anthropic_caught.value.body["error"]["type"] == "overloaded_error"
    assert [e["status"] for e in sim.log] == [200, 200]


# -- usage faults ----------------------------------------------------------------------


def test_no_usage(sim, oai, ant):
    completion = chat(oai, "no-usage")
    chunks = list(chat(oai, "no-usage", stream=True, stream_options={"include_usage": True}))
    anthropic_message = message(ant, "no-usage")

    assert completion.usage is None
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)  # no trailing usage-only chunk
    assert anthropic_message.usage is None
    # The log keeps the ground truth the upstream did not report.
    assert [e["completion_tokens"] for e in sim.log] == [20, 20, 20]


def test_zero_usage(oai, ant):
    completion = chat(oai, "zero-usage")
    anthropic_message = message(ant, "zero-usage")

    assert completion.usage.prompt_tokens == completion.usage.completion_tokens == 0
    assert completion.usage.total_tokens == 0
    assert anthropic_message.usage.input_tokens == anthropic_message.usage.output_tokens == 0


def test_bad_usage(sim):
    response = httpx.post(**raw_chat(sim, "bad-usage"))
    anthropic_response = httpx.post(
        f"{sim.url}/v1/messages",
        headers={"x-api-key": "k", "x-sim-fault": "bad-usage"},
        json={"model": "m", "max_tokens": 10, "messages": MESSAGES},
    )

    usage = response.json()["usage"]
    assert usage["prompt_tokens"] == "many"
    assert usage["completion_tokens"] < 0
    assert usage["total_tokens"] is None
    assert anthropic_response.json()["usage"]["input_tokens"] == "many"


def test_zero_usage_applies_to_streams(oai):
    chunks = list(chat(oai, "zero-usage", stream=True, stream_options={"include_usage": True}))

    assert chunks[-1].usage.completion_tokens == 0
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 20


# -- timing ----------------------------------------------------------------------------


def test_latency_header(sim, oai):
    started = time.monotonic()
    chat(oai, headers={"x-sim-latency-ms": "250"})

    assert time.monotonic() - started >= 0.24
    assert sim.log[-1]["completed"] is True


def test_latency_and_fault_prefixes_combine(sim):
    client = openai.OpenAI(
        base_url=f"{sim.url}/fault/500/latency/200/v1", api_key="k", max_retries=0
    )

    started = time.monotonic()
    with pytest.raises(openai.InternalServerError):
        chat(client)

    assert time.monotonic() - started >= 0.19
    assert sim.log[-1]["status"] == 500


def test_client_leaving_during_latency_is_logged(sim, oai):
    with pytest.raises(openai.APITimeoutError):
        chat(oai, timeout=0.2, headers={"x-sim-latency-ms": "2000"})
    time.sleep(0.1)

    assert (sim.log[-1]["status"], sim.log[-1]["completed"]) == (None, False)


def test_tokens_per_second_paces_the_stream(sim):
    client = openai.OpenAI(base_url=f"{sim.url}/tps/100/v1", api_key="k", max_retries=0)

    started = time.monotonic()
    arrivals = []
    for chunk in chat(client, stream=True, headers={"x-sim-output-tokens": "15"}):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)

    assert len(arrivals) == 15
    assert arrivals[-1] - arrivals[0] >= 14 * 0.01 * 0.9
    assert sim.log[-1]["completed"] is True


def test_tokens_per_second_header_wins_over_prefix(sim):
    client = openai.OpenAI(base_url=f"{sim.url}/tps/5/v1", api_key="k", max_retries=0)

    started = time.monotonic()
    list(
        chat(
            client,
            stream=True,
            headers={"x-sim-tokens-per-second": "1000", "x-sim-output-tokens": "10"},
        )
    )

    assert time.monotonic() - started < 1.0  # at 5 tokens/s it would take 2 s
