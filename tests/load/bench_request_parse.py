"""What parsing and validating a request body costs the gateway, per request.

`uv run python -m tests.load.bench_request_parse` prints microseconds per call of
`parse_json` + `parse_chat` (or `parse_embeddings`) for a few typical bodies: the input
limits (issue 7) must stay a cheap pass over data already parsed.
"""

from __future__ import annotations

import os
import timeit

import orjson

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench")
os.environ.setdefault("SWITCHYARD_DEV_KEY", "1")

import django

django.setup()

from routing.gateway.requests import parse_chat, parse_embeddings, parse_json  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city, e.g. Lisbon"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "array", "items": {"type": "integer", "minimum": 1}},
    },
    "required": ["city"],
}
BODIES = {
    "chat, 3 messages": {
        "model": "balanced",
        "messages": [
            {"role": "system", "content": "You are a helpful assistant. " * 4},
            {"role": "user", "content": "Summarise the following text in two sentences. " * 8},
            {"role": "assistant", "content": "Sure: " + "words " * 40},
        ],
        "max_tokens": 256,
        "temperature": 0.3,
    },
    "chat, 20 messages + 2 tools": {
        "model": "auto",
        "messages": [
            {"role": "user" if i % 2 else "assistant", "content": "some text " * 30}
            for i in range(20)
        ],
        "tools": [
            {"type": "function", "function": {"name": f"tool_{i}", "parameters": SCHEMA}}
            for i in range(2)
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "stop": ["\n\n", "END"],
    },
    "chat, image parts": {
        "model": "precision",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            }
        ],
    },
}
EMBEDDINGS = {"model": "sim-embed", "input": ["a sentence to embed " * 5] * 16}


def _per_call_us(fn, number: int = 20_000) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    for name, body in BODIES.items():
        raw = orjson.dumps(body)
        us = _per_call_us(lambda raw=raw: parse_chat(parse_json(raw)))
        print(f"{name:32} {len(raw):6} bytes  {us:6.2f} µs")  # noqa: T201
    raw = orjson.dumps(EMBEDDINGS)
    us = _per_call_us(lambda: parse_embeddings(parse_json(raw)))
    print(f"{'embeddings, 16 inputs':32} {len(raw):6} bytes  {us:6.2f} µs")  # noqa: T201


if __name__ == "__main__":
    main()
