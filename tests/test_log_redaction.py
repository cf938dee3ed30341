"""Nothing shaped like a provider key or a Switchyard key reaches a log line."""

from __future__ import annotations

import logging

import pytest

from config.logging import RedactingFormatter, RedactSecretsFilter, redact

SECRETS = [
    "sk-proj-Abc123def456ghi789jkl",
    "sk-ant-api03-AAAAbbbbCCCCdddd",
    "sy-it5Z1nsx7BqHMTNM4zwem2gtViFNlLPr",
    "gsk_" + "x" * 40,
    "AIzaSyA1234567890abcdefghijklmnopqrst",
]


@pytest.mark.parametrize("secret", SECRETS)
def test_redact_removes_every_key_shape(secret):
    assert secret not in redact(f"calling upstream with {secret} now")


def test_bearer_headers_are_redacted():
    assert "opaque-token-123456" not in redact("Authorization: Bearer opaque-token-123456")


def test_the_formatter_redacts_messages_arguments_and_tracebacks():
    formatter = RedactingFormatter("%(message)s")
    try:
        raise ValueError(f"bad key {SECRETS[0]}")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "key %s failed", (SECRETS[2],), None
        )
        import sys

        record.exc_info = sys.exc_info()
    line = formatter.format(record)

    assert SECRETS[0] not in line
    assert SECRETS[2] not in line
    assert "[REDACTED]" in line


def test_the_filter_redacts_extra_fields():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "event", None, None)
    record.api_key = SECRETS[1]

    RedactSecretsFilter().filter(record)

    assert record.api_key == "[REDACTED]"


def test_ordinary_text_is_left_alone():
    text = "gateway.attempt_failed provider=sim-openai status=500 model=gpt-4o-mini"
    assert redact(text) == text
