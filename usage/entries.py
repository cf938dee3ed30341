"""What the gateway hands the usage writer: plain data, cheap to build on the hot path."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """One upstream attempt, before it is a row. The end user may be known only by id string."""

    created_at: datetime
    tenant_id: int
    request_id: uuid.UUID
    attempt: int
    outcome: int
    end_user_id: int | None = None
    end_user_external_id: str | None = None
    api_key_id: int | None = None
    provider_id: int | None = None
    provider_key_id: int | None = None
    model_id: int | None = None
    key_source: int | None = None
    power_level: int = 0
    http_status: int | None = None
    is_stream: bool = False
    is_estimated: bool = False
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    credit_debit_usd: Decimal = Decimal(0)  # cost on a platform key, the fee on BYOK
    latency_ms: int = 0
    ttft_ms: int | None = None
    error: str = ""
