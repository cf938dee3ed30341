"""Money is Decimal, quantised in one place."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

USD_PLACES = Decimal("0.00000001")  # matches UsageRecord.cost_usd's 8 decimal places
CENT = Decimal("0.01")
PER_MILLION = Decimal(1_000_000)


def quantize_usd(amount: Decimal) -> Decimal:
    return amount.quantize(USD_PLACES, rounding=ROUND_HALF_UP)


def quantize_cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def token_cost(
    *,
    input_tokens: int,
    cached_tokens: int,
    output_tokens: int,
    input_price: Decimal,
    cached_price: Decimal,
    output_price: Decimal,
) -> Decimal:
    """Cost in USD at prices per 1M tokens; cached tokens only at the cached rate."""
    total = input_tokens * input_price + cached_tokens * cached_price + output_tokens * output_price
    return quantize_usd(total / PER_MILLION)
