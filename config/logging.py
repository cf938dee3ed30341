"""Log redaction: nothing that looks like a provider key or a Switchyard API key reaches a log."""

from __future__ import annotations

import logging
import re

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
