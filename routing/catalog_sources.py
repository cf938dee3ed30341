"""What a catalog sync reads: the pricing map, and each platform provider's models list.

No database here: the service (`routing.services.sync_catalog`) picks the providers and keys,
calls these readers before it opens its transaction, and plans the changes from what they
return. Every HTTP call goes through a `Fetch` (sync httpx by default; tests may pass
their own), with a timeout and a size limit.

Sources:
    The pricing map: LiteLLM's model_prices_and_context_window.json, from
        settings.SWITCHYARD_CATALOG_SOURCE_URL when set, else the bundled file
        (SWITCHYARD_CATALOG_SNAPSHOT). Parsed by `routing.catalog`; an unusable map raises
        CatalogSourceError, or CatalogSourceUnavailable when fetching it failed in a way that
        may pass (timeout, connection, 429, 5xx) and a retry is worth it.
    A models list: `GET {base}/models` built by the adapters' pure request builders, so it
        authenticates exactly as the gateway does (OpenAI-compatible: bearer / api-key;
        Anthropic: x-api-key, followed page by page). It gives the ids the provider serves.
    OpenRouter's models list (a provider of kind openrouter) also carries prices (USD per
        token, as strings) and limits: {"data": [{"id", "context_length", "pricing":
        {"prompt", "completion", "input_cache_read"}, "top_provider": {"max_completion_tokens"},
        "supported_parameters", "architecture": {"input_modalities"}}]}. Each item becomes a
        CatalogEntry like the pricing map's.

A list that fails or is malformed (not JSON, no `data` list, empty, mostly malformed items,
more pages than we follow) raises ModelsListError: the provider is then left as it is.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx
from django.conf import settings

from config import netguard
from providers import upstream_hosts
from providers.adapters import anthropic, openai_compatible
from providers.adapters.base import Target
from providers.adapters.errors import MAX_BODY_BYTES, describe_error_body, scrub
from providers.choices import WireProtocol
from routing import catalog
from routing.catalog import CatalogEntry, CatalogSourceError, ParsedCatalog, SkippedEntry

# The map is ~3 MB today; ten times that is still a map, more is something else.
MAX_PRICING_MAP_BYTES = 32 * 1024 * 1024
# A models list is at most a few hundred KB (OpenRouter's ~1 MB); the adapters' body bound.
MAX_MODELS_LIST_BYTES = MAX_BODY_BYTES
PRICING_MAP_TIMEOUT_SECONDS = 30.0
MODELS_LIST_TIMEOUT_SECONDS = 15.0
# Anthropic pages hold up to 1,000 models; ten pages is far beyond any provider's list.
MAX_LIST_PAGES = 10
OPENROUTER = "openrouter"
# Statuses worth retrying: the server is overloaded or briefly broken, not the request.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
# A dated snapshot of an alias: -20241022 (Anthropic), -2024-07-18 (OpenAI), -2411 (Mistral).
_DATE_SUFFIX = re.compile(r"-(?:\d{8}|\d{4}-\d{2}-\d{2}|\d{4})$")
LATEST_SUFFIX = "-latest"
TAG_LATEST = ":latest"  # Ollama lists llama3:latest for the model it also serves as llama3


class CatalogSourceUnavailable(CatalogSourceError):
    """The pricing map could not be fetched, for a reason that may pass: retry later.

    `run` is the failed CatalogSyncRun the service recorded before raising.
    """

    run: Any = None


class ModelsListError(Exception):
    """A provider's models list failed or is malformed; the provider is left as it is."""


class FetchError(Exception):
    """The request got no usable answer; `transient` when a retry may succeed."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


@dataclass(frozen=True, slots=True)
class Fetched:
    status: int
    body: bytes


class Fetch(Protocol):
    def __call__(
        self,
        url: str,
        *,
        headers: Mapping[str, str],
        timeout: float,
        max_bytes: int,
        follow_redirects: bool,
    ) -> Fetched: ...


def http_fetch(
    url: str,
    *,
    headers: Mapping[str, str],
    timeout: float,
    max_bytes: int,
    follow_redirects: bool,
    trusted_hosts: frozenset[str] = frozenset(),
) -> Fetched:
    """GET `url` with httpx; FetchError for no answer or one larger than `max_bytes`.

    Every connection to a host not in `trusted_hosts` passes the SSRF guard, a redirect's
    too (see `guarded_fetch`).
    """
    try:
        with (
            netguard.guarded_client(
                trusted_hosts=trusted_hosts, timeout=timeout, follow_redirects=follow_redirects
            ) as client,
            client.stream("GET", url, headers=dict(headers)) as response,
        ):
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise FetchError(f"the answer is larger than {max_bytes} bytes", transient=False)
            chunks: list[bytes] = []
            size = 0
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise FetchError(
                        f"the answer is larger than {max_bytes} bytes", transient=False
                    )
                chunks.append(chunk)
            return Fetched(status=response.status_code, body=b"".join(chunks))
    except netguard.DestinationRefused as exc:
        raise FetchError(f"address not allowed: {exc.reason}", transient=False) from None
    except httpx.TimeoutException:
        raise FetchError(f"no answer within {timeout:g} s", transient=True) from None
    except (httpx.InvalidURL, httpx.UnsupportedProtocol):
        raise FetchError("not a valid http(s) URL", transient=False) from None
    except httpx.TooManyRedirects:
        raise FetchError("too many redirects", transient=False) from None
    except (httpx.TransportError, OSError) as exc:
        raise FetchError(f"could not connect ({type(exc).__name__})", transient=True) from None


def guarded_fetch() -> Fetch:
    """`http_fetch` guarded as the gateway's connections are. Only platform providers' lists
    are read, so allow-listed hosts are trusted, and so is the host of the pricing map URL
    the operator set. Read now, once: the lists are fetched in threads, without a database.
    """
    trusted = upstream_hosts.trusted_hosts(tenant_endpoint=False)
    if settings.SWITCHYARD_CATALOG_SOURCE_URL:
        trusted |= {netguard.host_of(settings.SWITCHYARD_CATALOG_SOURCE_URL)}
    return functools.partial(http_fetch, trusted_hosts=trusted)


# --- the pricing map ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PricingMap:
    """The parsed map, plus the (pricing provider, model id) pairs it knows but we cannot route:
    other modes (images, audio, moderation, ...) and malformed entries. A provider listing one
    of those is not offering a new chat model."""

    parsed: ParsedCatalog
    unroutable: frozenset[tuple[str, str]]
    description: str

    def entries_for(self, pricing_provider: str) -> dict[str, CatalogEntry]:
        if not pricing_provider:
            return {}
        return {e.model_id: e for e in self.parsed.entries_for(pricing_provider)}

    def unroutable_for(self, pricing_provider: str) -> set[str]:
        return {model_id for pp, model_id in self.unroutable if pp == pricing_provider}


def load_pricing_map(*, url: str, path: str, fetch: Fetch = http_fetch) -> PricingMap:
    """The map from `url` when set, else from the file at `path`.

    CatalogSourceUnavailable when the URL could not be fetched for a passing reason;
    CatalogSourceError when the map is unusable (not JSON, not an object, mostly malformed).
    """
    raw = _fetch_pricing_map(url, fetch) if url else catalog.load_source(path)
    parsed = catalog.parse_pricing_map(raw)
    return PricingMap(
        parsed=parsed,
        unroutable=_unroutable(raw, parsed),
        description=describe_pricing_source(url=url, path=path),
    )


def describe_pricing_source(*, url: str, path: str) -> str:
    return f"pricing map {url}" if url else f"pricing map file {Path(path).name}"


def _fetch_pricing_map(url: str, fetch: Fetch) -> Mapping[str, Any]:
    if not url.startswith(("https://", "http://")):
        raise CatalogSourceError(f"The pricing map URL must be http(s): {url!r}.")
    try:
        answer = fetch(
            url,
            headers={"Accept": "application/json"},
            timeout=PRICING_MAP_TIMEOUT_SECONDS,
            max_bytes=MAX_PRICING_MAP_BYTES,
            follow_redirects=True,
        )
    except FetchError as exc:
        error = CatalogSourceUnavailable if exc.transient else CatalogSourceError
        raise error(f"Cannot fetch the pricing map from {url}: {exc.message}.") from None
    if not 200 <= answer.status < 300:
        transient = answer.status in TRANSIENT_STATUSES
        error = CatalogSourceUnavailable if transient else CatalogSourceError
        raise error(f"The pricing map URL {url} answered HTTP {answer.status}.")
    try:
        data = json.loads(answer.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CatalogSourceError(f"The pricing map at {url} is not valid JSON: {exc}.") from None
    if not isinstance(data, Mapping):
        raise CatalogSourceError(
            f"The pricing map at {url} must be a JSON object of models, "
            f"not a {type(data).__name__}."
        )
    return data


def _unroutable(raw: Mapping[str, Any], parsed: ParsedCatalog) -> frozenset[tuple[str, str]]:
    known = {
        (s.pricing_provider, s.key.removeprefix(f"{s.pricing_provider}/"))
        for s in parsed.skipped
        if s.pricing_provider
    }
    for key, entry in raw.items():
        if not isinstance(key, str) or not isinstance(entry, Mapping):
            continue
        provider = entry.get("litellm_provider")
        if isinstance(provider, str) and provider and entry.get("mode") not in catalog.MODES:
            known.add((provider, key.removeprefix(f"{provider}/")))
    return frozenset(known)


# --- models lists ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelsListing:
    """A provider's well-formed models list: the ids it serves, and for OpenRouter's format
    the prices and limits of each (id -> entry)."""

    ids: tuple[str, ...]
    entries: Mapping[str, CatalogEntry] = field(default_factory=dict)
    skipped: tuple[SkippedEntry, ...] = ()
    # Listed ids whose item was malformed: served, but never added without a price.
    unreadable: frozenset[str] = frozenset()


def list_models(
    target: Target,
    *,
    openrouter: bool = False,
    known: Mapping[str, CatalogEntry] | None = None,
    fetch: Fetch = http_fetch,
) -> ModelsListing:
    """The models `target` lists; ModelsListError (never carrying the key) when it cannot.

    `openrouter`: read prices and limits from OpenRouter's format; `known` (the pricing map's
    entries for the provider) fills in abilities an item does not state.
    """
    if target.protocol == WireProtocol.ANTHROPIC:
        url, headers = anthropic.build_models_request(target)
    elif target.protocol == WireProtocol.OPENAI:
        url, headers = openai_compatible.build_models_request(target)
    else:
        raise ModelsListError(f"no models list for the {target.protocol} protocol")
    items: list[Any] = []
    for _page in range(MAX_LIST_PAGES):
        body = _get_list(url, headers, target.api_key, fetch)
        page, last_id = _list_page(body)
        items += page
        if not last_id:
            break
        # Anthropic's pagination: has_more with the page's last id as the next cursor.
        url = f"{url.split('&after_id=')[0]}&after_id={quote(last_id, safe='')}"
    else:
        raise ModelsListError(f"the models list has more than {MAX_LIST_PAGES} pages")
    if not items:
        raise ModelsListError("the models list is empty")
    if openrouter:
        return _openrouter_listing(items, known or {})
    return _plain_listing(items)


def _get_list(url: str, headers: Mapping[str, str], api_key: str, fetch: Fetch) -> bytes:
    try:
        answer = fetch(
            url,
            headers=headers,
            timeout=MODELS_LIST_TIMEOUT_SECONDS,
            max_bytes=MAX_MODELS_LIST_BYTES,
            follow_redirects=False,  # a redirect would carry the key elsewhere
        )
    except FetchError as exc:
        raise ModelsListError(scrub(f"the models list failed: {exc.message}", api_key)) from None
    if not 200 <= answer.status < 300:
        detail = describe_error_body(answer.body[: 64 * 1024], api_key)
        raise ModelsListError(
            scrub(f"the models list answered HTTP {answer.status}: {detail}", api_key)[:300]
        )
    return answer.body


def _list_page(body: bytes) -> tuple[list[Any], str]:
    """The page's items, and the cursor of the next page ("" when this is the last)."""
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelsListError("the models list is not JSON") from None
    data = obj.get("data") if isinstance(obj, dict) else None
    if not isinstance(data, list):
        raise ModelsListError("the models list has no `data` list")
    if obj.get("has_more") is True:
        last_id = obj.get("last_id")
        if not isinstance(last_id, str) or not last_id:
            raise ModelsListError("the models list has more pages but no cursor")
        return data, last_id
    return data, ""


def _refuse_if_mostly_malformed(total: int, skipped: list[SkippedEntry]) -> None:
    if len(skipped) > total * catalog.MAX_MALFORMED_SHARE:
        first = skipped[0]
        raise ModelsListError(
            f"{len(skipped)} of {total} items of the models list are malformed "
            f"(e.g. {first.key}: {first.reason})"
        )


def _item_id(index: int, item: Any) -> str:
    """The item's model id; ValueError saying what is wrong."""
    if not isinstance(item, Mapping):
        raise ValueError(f"item {index} is a {type(item).__name__}, not an object")
    model_id = item.get("id")
    if not isinstance(model_id, str) or not model_id.strip():
        raise ValueError(f"item {index} has no id")
    if len(model_id) > catalog.MAX_NAME_CHARS:
        raise ValueError(f"item {index}: the id is longer than {catalog.MAX_NAME_CHARS} chars")
    return model_id


def _plain_listing(items: list[Any]) -> ModelsListing:
    ids: dict[str, None] = {}
    skipped: list[SkippedEntry] = []
    for index, item in enumerate(items):
        try:
            ids[_item_id(index, item)] = None
        except ValueError as exc:
            skipped.append(SkippedEntry(key=f"#{index}", reason=str(exc)))
    _refuse_if_mostly_malformed(len(items), skipped)
    return ModelsListing(ids=tuple(ids), skipped=tuple(skipped))


def _openrouter_listing(items: list[Any], known: Mapping[str, CatalogEntry]) -> ModelsListing:
    entries: dict[str, CatalogEntry] = {}
    skipped: list[SkippedEntry] = []
    for index, item in enumerate(items):
        try:
            entry = parse_openrouter_model(_item_id(index, item), item, known)
        except ValueError as exc:
            key = item.get("id") if isinstance(item, Mapping) else None
            skipped.append(
                SkippedEntry(
                    key=key if isinstance(key, str) and key else f"#{index}",
                    reason=str(exc),
                    pricing_provider=OPENROUTER,
                )
            )
            continue
        entries[entry.model_id] = entry
    _refuse_if_mostly_malformed(len(items), skipped)
    # Ids that were listed but malformed are still served: they count as present.
    unreadable = frozenset(s.key for s in skipped if not s.key.startswith("#"))
    return ModelsListing(
        ids=tuple(dict.fromkeys([*entries, *unreadable])),
        entries=entries,
        skipped=tuple(skipped),
        unreadable=unreadable,
    )


def parse_openrouter_model(
    model_id: str, item: Mapping[str, Any], known: Mapping[str, CatalogEntry]
) -> CatalogEntry:
    """One item of OpenRouter's models list as a catalog entry; ValueError if unreadable."""
    pricing = item.get("pricing")
    if not isinstance(pricing, Mapping):
        raise ValueError("no pricing")
    input_price = _per_token_price(pricing, "prompt", required=True)
    output_price = _per_token_price(pricing, "completion", required=True)
    cached = _per_token_price(pricing, "input_cache_read", required=False)
    top = item.get("top_provider")
    top = top if isinstance(top, Mapping) else {}
    context = _token_count(item.get("context_length"), "context_length") or _token_count(
        top.get("context_length"), "top_provider.context_length"
    )
    context = context or catalog.DEFAULT_CONTEXT_WINDOW
    max_output = _token_count(top.get("max_completion_tokens"), "max_completion_tokens")
    fallback = known.get(model_id)
    tools, vision, structured = _abilities(item, fallback)
    key = f"{OPENROUTER}/{model_id}"
    return CatalogEntry(
        pricing_provider=OPENROUTER,
        key=key,
        model_id=model_id,
        name=catalog.client_name(pricing_provider=OPENROUTER, key=key, model_id=model_id),
        mode="chat",
        input_price_per_mtok=input_price,
        output_price_per_mtok=output_price,
        cached_input_price_per_mtok=input_price if cached is None else cached,
        context_window=context,
        max_output_tokens=max_output or min(catalog.DEFAULT_MAX_OUTPUT_TOKENS, context),
        supports_tools=tools,
        supports_vision=vision,
        supports_json=structured,
    )


def _abilities(item: Mapping[str, Any], fallback: CatalogEntry | None) -> tuple[bool, bool, bool]:
    """(tools, vision, JSON schema) from the item, else from the pricing map, else none."""
    params = item.get("supported_parameters")
    architecture = item.get("architecture")
    modalities = architecture.get("input_modalities") if isinstance(architecture, Mapping) else None
    if isinstance(params, list):
        tools = "tools" in params
        structured = "structured_outputs" in params or "response_format" in params
    else:
        tools = bool(fallback and fallback.supports_tools)
        structured = bool(fallback and fallback.supports_json)
    if isinstance(modalities, list):
        vision = "image" in modalities
    else:
        vision = bool(fallback and fallback.supports_vision)
    return tools, vision, structured


def _per_token_price(pricing: Mapping[str, Any], name: str, *, required: bool) -> Decimal | None:
    """USD per token (a string or number) as USD per 1M tokens, 6 decimals."""
    value = pricing.get(name)
    if value is None or value == "":
        if required:
            raise ValueError(f"no pricing.{name}")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"pricing.{name} is not a number: {value!r}"[:80])
    try:
        per_token = Decimal(value if isinstance(value, str) else repr(value))
    except InvalidOperation:
        raise ValueError(f"pricing.{name} is not a number: {value!r}"[:80]) from None
    if not per_token.is_finite():
        raise ValueError(f"pricing.{name} is not finite")
    if per_token < 0:  # OpenRouter marks variable-priced routers (openrouter/auto) with -1
        raise ValueError(f"pricing.{name} is negative (variable price): {value!r}"[:80])
    price = (per_token * catalog.TOKENS_PER_MILLION).quantize(catalog.PRICE_QUANTUM, ROUND_HALF_UP)
    if price >= catalog.MAX_PRICE_PER_MTOK:
        raise ValueError(f"pricing.{name} is out of range: {value!r}"[:80])
    return price


def _token_count(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} is not a number: {value!r}"[:80])
    if not math.isfinite(value) or value < 0 or value > catalog.MAX_TOKENS:
        raise ValueError(f"{name} is out of range: {value!r}"[:80])
    return int(value) or None


# --- which catalog models a list covers --------------------------------------------------------


def presence(listed: Iterable[str]) -> Callable[[str], bool]:
    """Whether a catalog model id is served, given the ids a provider lists.

    Listed ids are served; so are aliases of a listed dated snapshot, which some providers
    accept but do not list (Anthropic lists claude-sonnet-4-5-20250929, not claude-sonnet-4-5),
    "-latest" aliases of a listed family (claude-3-5-sonnet-latest), and Ollama's untagged
    names (llama3 for llama3:latest).
    """
    ids = frozenset(listed)
    stems = frozenset(
        [_DATE_SUFFIX.sub("", i) for i in ids if _DATE_SUFFIX.search(i)]
        + [i.removesuffix(TAG_LATEST) for i in ids if i.endswith(TAG_LATEST)]
    )

    def served(model_id: str) -> bool:
        if model_id in ids or model_id in stems:
            return True
        if model_id.endswith(LATEST_SUFFIX):
            family = model_id.removesuffix(LATEST_SUFFIX)
            return family in ids or family in stems
        return False

    return served
