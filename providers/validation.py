"""Checking a provider key with one small live request (sync: admin actions, pages, tasks).

The request is built by the same pure functions the gateway's adapters use, so a key that
validates here authenticates the same way on the hot path. httpx is the sync client; the
async side uses aiohttp (see ARCHITECTURE.md for why).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from django.apps import apps
from django.db.models import F

from config.netguard import DestinationRefused
from providers import upstream_hosts
from providers.adapters import anthropic, openai_compatible
from providers.adapters.base import Target, UpstreamError
from providers.adapters.errors import MAX_BODY_BYTES, describe_error_body, scrub
from providers.choices import ProviderKind, WireProtocol

# Enough for any model to answer "ping"; the check costs a fraction of a cent.
VALIDATION_MAX_TOKENS = 5
VALIDATION_PROMPT = "ping"


@dataclass(frozen=True, slots=True)
class ValidationResult:
    """`ok`: the provider accepted the key. `error`: why not, or a note when ok (never the key).

    `status`: the provider's HTTP status, None when it did not answer. `transient`: the failure
    may pass by itself (no answer, a timeout, 429, 5xx): it says nothing about the key.
    """

    ok: bool
    error: str
    latency_ms: int
    status: int | None = None
    transient: bool = False


def _validation_body(kind: str) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": VALIDATION_PROMPT}]}
    # OpenAI's reasoning models refuse max_tokens; every other OpenAI-compatible server
    # (and the Anthropic translation) understands it.
    if kind in (ProviderKind.OPENAI, ProviderKind.AZURE_OPENAI):
        body["max_completion_tokens"] = VALIDATION_MAX_TOKENS
    else:
        body["max_tokens"] = VALIDATION_MAX_TOKENS
    return body


def _request(target: Target) -> tuple[str, str, Mapping[str, str], bytes | None]:
    """(method, url, headers, body) of the validation call, built by the adapters."""
    if target.protocol == WireProtocol.ANTHROPIC:
        if target.model_id:
            body = _validation_body(target.kind)
            url, headers, data = anthropic.build_chat_request(target, body, stream=False)
            return "POST", url, headers, data
        url, headers = anthropic.build_models_request(target)
        return "GET", url, headers, None
    if target.protocol == WireProtocol.OPENAI:
        if target.model_id:
            body = _validation_body(target.kind)
            url, headers, data = openai_compatible.build_chat_request(target, body, stream=False)
            return "POST", url, headers, data
        url, headers = openai_compatible.build_models_request(target)
        return "GET", url, headers, None
    raise LookupError(target.protocol)


def _check_body(target: Target, raw: bytes) -> None:
    """Raise UpstreamError when a 2xx body is not what the protocol answers."""
    if target.protocol == WireProtocol.ANTHROPIC:
        if target.model_id:
            anthropic.parse_chat_response(raw, created=0)
        else:
            anthropic.parse_models(raw)
    elif target.model_id:
        openai_compatible.parse_chat_response(raw)
    else:
        openai_compatible.parse_models(raw)


def _status_message(status: int, detail: str, *, model_id: str) -> tuple[bool, str]:
    """(ok, message) for a non-2xx answer, in words a tenant can act on."""
    if status in (401, 403):
        return False, f"The provider rejected this key ({status})."
    if status in (400, 422):
        # Authentication happens before the body is checked: the key is good, the test
        # request (model, parameters) is what the provider refused.
        return True, f"The key works, but the test request was refused ({status}): {detail}"
    if status == 404:
        if model_id:
            return False, f"Not found (404): check the base URL and the model id {model_id!r}."
        return False, "Not found (404): check the base URL."
    if status == 429:
        return (
            False,
            f"The provider is rate limiting this key or it is out of quota (429): {detail}",
        )
    if 300 <= status < 400:
        return False, f"The provider answered with a redirect ({status}): check the base URL."
    return False, f"The provider failed to answer ({status}); try again later: {detail}"


def validate_key(
    *,
    protocol: str,
    kind: str,
    base_url: str,
    api_key: str,
    options: Mapping[str, Any],
    model_id: str | None,
    timeout: float = 10,
    tenant_endpoint: bool = False,
) -> ValidationResult:
    """Check `api_key` with a 5-token completion on `model_id`, or a models list without one.

    Never raises for the provider's failures; the result's error never contains the key.
    The connection passes the SSRF guard as the gateway's do (`tenant_endpoint`: the provider
    is a tenant's own, so allow-listed hosts are no exception).
    """
    target = Target(
        protocol=protocol,
        kind=kind,
        base_url=base_url,
        api_key=api_key,
        model_id=model_id or "",
        options=dict(options or {}),
    )
    started = time.perf_counter()

    def result(
        ok: bool, error: str, *, status: int | None = None, transient: bool = False
    ) -> ValidationResult:
        latency_ms = int((time.perf_counter() - started) * 1000)
        return ValidationResult(
            ok=ok,
            error=scrub(error, api_key)[:300],
            latency_ms=latency_ms,
            status=status,
            transient=transient,
        )

    try:
        method, url, headers, data = _request(target)
    except LookupError:
        return result(False, f"Key validation is not available for the {protocol!r} protocol.")
    except UpstreamError as exc:
        return result(False, exc.message)
    try:
        with upstream_hosts.http_client(
            base_url=base_url,
            tenant_endpoint=tenant_endpoint,
            timeout=timeout,
            follow_redirects=False,
        ) as client:
            response = client.request(method, url, headers=dict(headers), content=data)
    except DestinationRefused as exc:
        return result(False, f"The base URL's address is not allowed: {exc.reason}.")
    except httpx.TimeoutException:
        return result(False, f"The provider did not answer within {timeout:g} s.", transient=True)
    except httpx.InvalidURL:
        return result(False, "The base URL is not a valid URL.")
    except (httpx.TransportError, OSError) as exc:
        return result(
            False, f"Could not connect to the provider ({type(exc).__name__}).", transient=True
        )
    raw = response.content[:MAX_BODY_BYTES]
    if not 200 <= response.status_code < 300:
        detail = describe_error_body(raw, api_key)
        status = response.status_code
        ok, message = _status_message(status, detail, model_id=target.model_id)
        return result(ok, message, status=status, transient=status == 429 or status >= 500)
    try:
        _check_body(target, raw)
    except UpstreamError as exc:
        return result(
            False,
            f"The provider answered, but not as expected: {exc.message}",
            status=response.status_code,
        )
    return result(True, "", status=response.status_code)


def cheapest_chat_model_id(provider: Any) -> str | None:
    """The model a key is tested on: the provider's cheapest enabled chat model."""
    # By name, not import: providers sits below routing (STYLE §1).
    catalog = apps.get_model("routing", "CatalogModel")
    return (
        catalog.objects.filter(provider=provider, mode="chat", is_enabled=True, is_deprecated=False)
        .order_by(F("input_price_per_mtok") + F("output_price_per_mtok"), "pk")
        .values_list("model_id", flat=True)
        .first()
    )


def check_key(provider: Any, secret: str, *, timeout: float) -> ValidationResult:
    """A 5-token completion on the provider's cheapest chat model, else a models list.

    Shared by the keys page, the management API and the background validation task.
    """
    model_id = cheapest_chat_model_id(provider)

    def check(model: str | None) -> ValidationResult:
        return validate_key(
            protocol=provider.protocol,
            kind=provider.kind,
            base_url=provider.base_url,
            api_key=secret,
            options=provider.options or {},
            model_id=model,
            timeout=timeout,
            tenant_endpoint=provider.tenant_id is not None,
        )

    result = check(model_id)
    if model_id and result.status == 404:
        # Authentication comes before the model lookup: a 404 here more likely means the
        # catalog's model is gone than that the key is bad. The models list decides.
        result = check(None)
    return result
