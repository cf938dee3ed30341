"""The Simulator: lifecycle, request log, fault script and routing.

Endpoints are matched on the end of the path, so any base-URL prefix works
(``/v1/chat/completions``, ``/openai/v1/chat/completions``, Azure's
``/openai/deployments/<name>/chat/completions``), after the control prefixes
``/fault/<spec>``, ``/latency/<ms>`` and ``/tps/<n>`` are stripped (see faults.py).

Control endpoints (no auth): ``GET /_sim/health``; ``GET|DELETE /_sim/log``;
``GET|POST|DELETE /_sim/script`` (POST ``{"faults": [...]}`` appends to the queue);
``/_sim/redirect-target`` (where the redirect fault points; hits are logged).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import re
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import orjson

from providers.simulator import anthropic_protocol, openai_protocol, wire
from providers.simulator.connection import Connection
from providers.simulator.delivery import JSON, SSE, Plan, deliver
from providers.simulator.exchange import BadRequest, Exchange, Knobs
from providers.simulator.faults import (
    Fault,
    FaultError,
    PathControls,
    parse_fault,
    parse_path_controls,
    select_fault,
)
from providers.simulator.reply import TextReply

DEFAULT_MODELS = ("sim-eco", "sim-balanced", "sim-precision", "sim-embed")
BAD_KEY_PREFIX = "sim-bad"
MIN_ENDLESS_INTERVAL = 0.001
HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>"
    b"<body><h1>Internal Server Error</h1><p>simulated html fault</p></body></html>"
)
_MODEL_PATH = re.compile(r"/models/([^/]+)$")
_DEPLOYMENT_PATH = re.compile(r"/deployments/([^/]+)/")
# Endpoints that generate tokens: the ones a fault script is consumed by.
_GENERATING = ("chat", "messages", "embeddings")

Pending = Coroutine[Any, Any, None] | None


@dataclass(slots=True)
class SimulatorConfig:
    latency_ms: float = 0  # delay before the status line of every /v1 answer
    tokens_per_second: float = 0  # stream pacing; 0 = as fast as possible
    models: tuple[str, ...] = ()  # added to DEFAULT_MODELS in model lists
    output_tokens: int = 20  # answer length before max_tokens caps it
    log_size: int = 100_000  # the log keeps the most recent entries

    @property
    def all_models(self) -> tuple[str, ...]:
        return DEFAULT_MODELS + tuple(m for m in self.models if m not in DEFAULT_MODELS)


def _route(api_path: str) -> tuple[str, str | None]:
    if api_path.endswith("/chat/completions"):
        return "chat", None
    if api_path.endswith("/messages/count_tokens"):
        return "count_tokens", None
    if api_path.endswith("/messages"):
        return "messages", None
    if api_path.endswith("/embeddings"):
        return "embeddings", None
    if api_path.endswith("/models"):
        return "models", None
    match = _MODEL_PATH.search(api_path)
    if match:
        return "model", match.group(1)
    return "unknown", None


def _api_key(headers: dict[str, str]) -> str | None:
    """The key as sent: Anthropic's x-api-key, Azure's api-key, or a Bearer token."""
    key = headers.get("x-api-key") or headers.get("api-key")
    if key:
        return key
    authorization = headers.get("authorization", "")
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip() or None
    return None


def _number(headers: dict[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise FaultError(f"header {name} must be a number, got {raw!r}") from None
    if value < 0:
        raise FaultError(f"header {name} must not be negative")
    return value


def _first(*values: float | None) -> float:
    return next(v for v in values if v is not None)


Render = Callable[[Exchange | None, str], bytes | Plan]


@dataclass(slots=True)
class _Call:
    """One /v1 request on its way through dispatch."""

    conn: Connection
    request: wire.Request
    entry: dict[str, Any]  # its log entry, updated as the answer goes out
    dialect: ModuleType  # openai_protocol or anthropic_protocol
    controls: PathControls
    headers: list[tuple[str, str]] = field(default_factory=list)  # on every answer

    def __post_init__(self) -> None:
        request_id = self.entry["request_id"]
        self.headers = [("x-request-id", request_id), ("request-id", request_id)]

    @property
    def sse_headers(self) -> list[tuple[str, str]]:
        return [("content-type", SSE), ("cache-control", "no-cache"), *self.headers]

    def fail(self, status: int, message: str, code: str | None = None) -> Pending:
        body = self.dialect.error_body(status, message, code)
        plan = Plan(status, [("content-type", JSON), *self.headers], body)
        return deliver(self.conn, plan, self.entry, self.request.keep_alive)


class Simulator:
    """A fake OpenAI/Anthropic upstream serving on one asyncio loop."""

    def __init__(self, config: SimulatorConfig | None = None, **options: Any) -> None:
        self.config = dataclasses.replace(config or SimulatorConfig(), **options)
        self.host = "127.0.0.1"
        self.port = 0
        self._log: deque[dict[str, Any]] = deque(maxlen=self.config.log_size)
        self._script: deque[str] = deque()
        self._seq = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle and test accessors --------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> Simulator:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: Connection(self.handle, self._connections, self._tasks),
            host,
            port,
            backlog=1024,
        )
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        return self

    async def serve_forever(self) -> None:
        assert self._server is not None, "start() first"  # noqa: S101
        await self._server.serve_forever()

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in list(self._connections):
            conn.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await server.wait_closed()

    async def __aenter__(self) -> Simulator:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def log(self) -> list[dict[str, Any]]:
        """A copy of the request log, oldest first."""
        return [dict(entry) for entry in self._log]

    def clear_log(self) -> None:
        self._log.clear()

    def script(self, faults: Iterable[str]) -> None:
        """Queue fault specs consumed one per completion request ("ok" = normal)."""
        faults = list(faults)
        for spec in faults:
            parse_fault(spec)  # reject typos now rather than on the request that pops it
        self._script.extend(faults)

    @property
    def pending_script(self) -> list[str]:
        return list(self._script)

    def clear_script(self) -> None:
        self._script.clear()

    # -- dispatch ----------------------------------------------------------------------

    def handle(self, request: wire.Request, conn: Connection) -> Pending:
        if request.path.startswith("/_sim/"):
            return self._control(request, conn)
        return self._api(request, conn)

    def _record(self, request: wire.Request, protocol: str) -> dict[str, Any]:
        seq = next(self._seq)
        entry: dict[str, Any] = {
            "seq": seq,
            "ts": time.time(),
            "method": request.method,
            "path": request.path,
            "protocol": protocol,
            "model": None,
            "api_key": None,
            "stream": False,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "cached_tokens": 0,
            "cache_creation_tokens": 0,
            "fault": None,
            "status": None,
            "completed": False,
            "request_id": f"req_sim{seq:010d}",
            "response_id": None,
        }
        self._log.append(entry)
        return entry

    def _api(self, request: wire.Request, conn: Connection) -> Pending:
        control_error = None
        try:
            controls = parse_path_controls(request.path)
        except FaultError as err:
            controls, control_error = PathControls(request.path), str(err)
        endpoint, model_id = _route(controls.api_path)
        anthropic = endpoint in ("messages", "count_tokens") or (
            endpoint not in ("chat", "embeddings") and "anthropic-version" in request.headers
        )
        dialect = anthropic_protocol if anthropic else openai_protocol
        entry = self._record(request, dialect.NAME)
        call = _Call(conn, request, entry, dialect, controls)

        key = entry["api_key"] = _api_key(request.headers)
        if key is None:
            return call.fail(401, "You didn't provide an API key (simulator).", "missing_api_key")
        if key.startswith(BAD_KEY_PREFIX):
            return call.fail(401, "Incorrect API key provided (simulator).", "invalid_api_key")
        if control_error:
            return call.fail(400, f"simulator: {control_error}")
        if endpoint == "unknown":
            return call.fail(404, f"simulator: no endpoint at {controls.api_path}", "unknown_url")
        wanted = "GET" if endpoint in ("models", "model") else "POST"
        if request.method != wanted:
            return call.fail(405, f"simulator: {request.method} not allowed here, use {wanted}")
        try:
            if endpoint in ("models", "model"):
                body = (
                    dialect.models_body(self.config.all_models)
                    if endpoint == "models"
                    else dialect.model_body(str(model_id))
                )
                return self._respond(call, lambda ex, mode: body)
            return self._generate(call, endpoint, self._payload(call))
        except BadRequest as err:
            return call.fail(400, err.message)
        except FaultError as err:
            return call.fail(400, f"simulator: {err}")

    @staticmethod
    def _payload(call: _Call) -> dict[str, Any]:
        try:
            payload = orjson.loads(call.request.body)
        except orjson.JSONDecodeError:
            raise BadRequest("simulator: the request body is not valid JSON") from None
        if not isinstance(payload, dict):
            raise BadRequest("simulator: the request body must be a JSON object")
        # Azure names the model in the path, not the body.
        deployment = _DEPLOYMENT_PATH.search(call.controls.api_path)
        if deployment and "model" not in payload:
            payload["model"] = deployment.group(1)
        model = payload.get("model")
        call.entry["model"] = model if isinstance(model, str) else None
        return payload

    def _knobs(self, headers: dict[str, str], controls: PathControls) -> Knobs:
        output = _number(headers, "x-sim-output-tokens")
        cached = _number(headers, "x-sim-cached-tokens")
        return Knobs(
            output_tokens=int(output) if output is not None else self.config.output_tokens,
            cached_tokens=int(cached if cached is not None else controls.cached_tokens or 0),
            cache_creation_tokens=int(_number(headers, "x-sim-cache-creation-tokens") or 0),
        )

    def _generate(self, call: _Call, endpoint: str, payload: dict[str, Any]) -> Pending:
        entry = call.entry
        if endpoint == "count_tokens":
            body = anthropic_protocol.count_tokens_body(anthropic_protocol.count_prompt(payload))
            return self._respond(call, lambda ex, mode: body)
        if endpoint == "embeddings":
            embeddings = openai_protocol.parse_embeddings(payload)
            entry["prompt_tokens"] = embeddings.prompt_tokens
            return self._respond(
                call,
                lambda ex, mode: openai_protocol.embeddings_json(embeddings, mode),
                generating=True,
            )
        knobs = self._knobs(call.request.headers, call.controls)
        if endpoint == "chat":
            ex = openai_protocol.parse_chat(payload, seq=entry["seq"], knobs=knobs)
            render_json, render_frames = openai_protocol.chat_json, openai_protocol.chat_frames
        else:
            ex = anthropic_protocol.parse_messages(payload, seq=entry["seq"], knobs=knobs)
            render_json = anthropic_protocol.message_json
            render_frames = anthropic_protocol.message_frames
        entry.update(
            stream=ex.stream,
            prompt_tokens=ex.prompt_tokens,
            cached_tokens=ex.cached_tokens,
            cache_creation_tokens=ex.cache_creation_tokens,
            response_id=ex.id,
        )

        def render(ex: Exchange | None, mode: str) -> bytes | Plan:
            assert ex is not None  # noqa: S101 - completions always have one
            if ex.stream:
                return Plan(200, call.sse_headers, frames=render_frames(ex, mode))
            return render_json(ex, mode)

        return self._respond(call, render, ex=ex, generating=True)

    def _respond(
        self, call: _Call, render: Render, *, ex: Exchange | None = None, generating: bool = False
    ) -> Pending:
        """Pick the fault and timing for a well-formed request, then deliver it."""
        headers, controls = call.request.headers, call.controls
        latency = _number(headers, "x-sim-latency-ms")
        if latency is None:
            latency = _first(controls.latency_ms, self.config.latency_ms)
        tps = _number(headers, "x-sim-tokens-per-second")
        if tps is None:
            tps = _first(controls.tokens_per_second, self.config.tokens_per_second)
        spec = select_fault(
            header=headers.get("x-sim-fault"),
            path=controls.fault,
            script=self._script if generating else None,
            model=call.entry["model"],
        )
        call.entry["fault"] = spec  # kept when the spec does not parse, to show the typo
        fault = parse_fault(spec) if spec else None
        call.entry["fault"] = fault.spec if fault else None
        plan = self._plan(call, fault, ex, render)
        plan.latency = latency / 1000
        if tps > 0 and plan.interval == 0:
            plan.interval = 1 / tps
        return deliver(call.conn, plan, call.entry, call.request.keep_alive)

    def _plan(self, call: _Call, fault: Fault | None, ex: Exchange | None, render: Render) -> Plan:
        dialect, headers, request = call.dialect, call.headers, call.request
        json_headers = [("content-type", JSON), *headers]

        def normal(ex: Exchange | None = ex, mode: str = "normal") -> Plan:
            rendered = render(ex, mode)
            if isinstance(rendered, Plan):
                return rendered
            tokens = ex.completion_tokens if ex is not None else 0
            return Plan(200, json_headers, rendered, tokens)

        if fault is None or fault.usage_mode != "normal":
            return normal(mode=fault.usage_mode if fault else "normal")
        streaming = ex is not None and ex.stream
        name = fault.name
        if name == "status":
            status = fault.status or 500
            extra = [("retry-after", f"{fault.param('ra'):g}")] if fault.has("ra") else []
            body = dialect.error_body(status, f"simulated {status} fault")
            return Plan(status, [*json_headers, *extra], body)
        if name == "html":
            return Plan(500, [("content-type", "text/html; charset=utf-8"), *headers], HTML_PAGE)
        if name == "redirect":
            host = request.headers.get("host") or f"{self.host}:{self.port}"
            location = ("location", f"http://{host}/_sim/redirect-target")
            return Plan(302, [location, *headers])
        if name == "empty":
            return Plan(200, json_headers)
        if name in ("refuse", "hang"):
            return Plan(0, action=name)  # type: ignore[arg-type]
        if name == "truncated":
            plan = normal()
            plan.action = "truncate"
            return plan
        if name == "cut":
            plan = normal()
            plan.action = "cut" if plan.frames is not None else "truncate"
            plan.cut_after = int(fault.param("after"))
            return plan
        if name == "drip":
            plan = normal()
            plan.action = "drip"
            plan.drip_ms = fault.param("ms")
            plan.drip_bytes = int(fault.param("bytes"))
            return plan
        if name == "oversized":
            size = int(fault.param("mb") * 1024 * 1024)
            if ex is None:
                padding = orjson.dumps({"object": "list", "data": [], "padding": "x" * size})
                return Plan(200, json_headers, padding)
            # One giant word: valid JSON, one token by the counting rule.
            return normal(dataclasses.replace(ex, reply=TextReply(("x" * size,), "stop")))
        interval = max(fault.param("ms") / 1000, MIN_ENDLESS_INTERVAL) if name == "endless" else 0
        if name == "endless" and streaming and ex is not None:
            endless = (
                openai_protocol.chat_endless_frames
                if dialect is openai_protocol
                else anthropic_protocol.message_endless_frames
            )
            return Plan(200, call.sse_headers, frames=endless(ex), endless=True, interval=interval)
        if name == "endless":
            return Plan(200, json_headers, action="endless_body", interval=interval)
        if name == "stream-error":
            if not streaming:
                return Plan(500, json_headers, dialect.error_body(500, "simulated 500 fault"))
            plan = normal()
            assert plan.frames is not None  # noqa: S101 - streaming
            error = dialect.error_frame(500, "simulated stream error")
            plan.frames = itertools.chain(
                itertools.islice(plan.frames, int(fault.param("after"))), [(error, 0)]
            )
            return plan
        raise FaultError(f"fault {fault.spec!r} is not implemented")  # pragma: no cover

    # -- control endpoints -------------------------------------------------------------

    def _control(self, request: wire.Request, conn: Connection) -> Pending:
        route = (request.method, request.path.rstrip("/"))
        status, body = 200, None
        if route == ("GET", "/_sim/health"):
            body = {"ok": True}
        elif route == ("GET", "/_sim/log"):
            body = list(self._log)
        elif route == ("DELETE", "/_sim/log"):
            self.clear_log()
            body = {"ok": True}
        elif route == ("GET", "/_sim/script"):
            body = {"faults": self.pending_script}
        elif route == ("DELETE", "/_sim/script"):
            self.clear_script()
            body = {"ok": True}
        elif route == ("POST", "/_sim/script"):
            status, body = self._post_script(request.body)
        elif route[1] == "/_sim/redirect-target":
            entry = self._record(request, "openai")
            entry.update(api_key=_api_key(request.headers), status=200, completed=True)
            body = {"redirected": True}
        else:
            status, body = 404, {"error": f"no simulator control endpoint {route[1]}"}
        data = orjson.dumps(body)
        head = wire.response_head(
            status, [("content-type", JSON)], length=len(data), keep_alive=request.keep_alive
        )
        conn.write(head + data)
        if not request.keep_alive:
            conn.close()
        return None

    def _post_script(self, raw: bytes) -> tuple[int, dict[str, Any]]:
        try:
            payload = orjson.loads(raw)
            faults = payload["faults"]
            if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
                raise TypeError
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return 400, {"error": 'expected {"faults": ["500", "ok", ...]}'}
        try:
            self.script(faults)
        except FaultError as err:
            return 400, {"error": str(err)}
        return 200, {"queued": len(self._script)}
