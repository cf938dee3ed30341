"""Logging: redaction (nothing shaped like a provider key or a Switchyard API key reaches a log),
the request id every line carries, and the JSON line format production logs in."""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

# Covers OpenAI/Anthropic/Groq/OpenRouter style keys, our own `sy-` keys, bearer tokens and
# Google keys. Over-redaction is fine here; a leaked key is not.
SECRET_PATTERN = re.compile(
    r"(?:\b(?:sk|sy|gsk|pk|rk|xai)-[A-Za-z0-9_\-]{6,}"
    r"|\b(?:sk|gsk|rk|pk)_[A-Za-z0-9_\-]{8,}"
    r"|\bAIza[0-9A-Za-z_\-]{20,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._\-]{8,})"
)
REDACTED = "[REDACTED]"


def redact(text: str) -> str:
    """`text` with every key-looking token replaced."""
    return SECRET_PATTERN.sub(REDACTED, text)


class RedactSecretsFilter(logging.Filter):
    """Redacts the formatted message and string `extra` values of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string must not drop the line
            message = str(record.msg)
        record.msg = redact(message)
        record.args = None
        for key, value in list(record.__dict__.items()):
            if isinstance(value, str) and key not in {"msg", "name", "levelname", "pathname"}:
                record.__dict__[key] = redact(value)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class RedactingFormatter(logging.Formatter):
    """Redacts the whole formatted line, tracebacks included (the filter cannot see those)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


# The request a log line belongs to: set by the gateway for /v1/* (its x-request-id) and by
# config.request_id.RequestIDMiddleware for pages and the management API. A ContextVar, so
# each asyncio task and each thread sees its own request's id.
REQUEST_ID: ContextVar[str | None] = ContextVar("switchyard_request_id", default=None)

# What every LogRecord carries; anything else on a record came from `extra=` (except
# uvicorn's copy of its message in terminal colours).
_RECORD_FIELDS = frozenset(logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}
_CORE = ("time", "level", "logger", "message", "request_id")


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, the `extra` fields
    (and exc_info / stack_info when present); the whole line is redacted like RedactingFormatter's.
    """

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            # Django logs a response's 4xx/5xx after the middleware has returned; its
            # `request` extra still carries the id.
            "request_id": REQUEST_ID.get()
            or getattr(record.__dict__.get("request"), "request_id", None),
        }
        for key, value in record.__dict__.items():
            if key in _RECORD_FIELDS:
                continue
            if key == "request_id" and payload["request_id"] in (None, value):
                payload["request_id"] = value  # logged outside the request's context
            else:
                # An extra named like a core field keeps its value under another name.
                payload[f"extra_{key}" if key in _CORE else key] = value
        if record.exc_info:
            payload["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            payload["exc_info"] = record.exc_text
        if record.stack_info:
            payload["stack_info"] = self.formatStack(record.stack_info)
        try:
            line = orjson.dumps(payload, default=str, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # e.g. an int too large for JSON: the line still gets out
            line = orjson.dumps({k: str(v) for k, v in payload.items()})
        # The filter redacted the message and string extras; this also covers nested values
        # and tracebacks. REDACTED has no quote or backslash, so the line stays valid JSON.
        return redact(line.decode())
