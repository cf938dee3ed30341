"""Fault specs and where a request picks them up.

Spec syntax: ``name`` or ``name:key=value,key=value`` (values are numbers). Names:

* a status code 400-599 (``429``, ``500``, ...): an error body in the protocol's shape;
  ``ra=N`` adds ``Retry-After: N`` (e.g. ``429:ra=2``);
* ``refuse``: close the connection without answering;
* ``hang``: read the request, never answer (until the client gives up);
* ``html``: 500 with an HTML page; ``empty``: 200 with an empty body;
* ``truncated``: 200 whose body stops half-way through its Content-Length, then close;
* ``oversized`` (``mb=20``): 200 with a valid but huge completion;
* ``drip`` (``ms=3000,bytes=8``): the whole response a few bytes at a time over ``ms``;
* ``endless`` (``ms=100``): a stream that never ends, one word every ``ms``
  (a non-streamed request gets headers and then JSON whitespace forever);
* ``cut`` (``after=3``): the stream is cut after ``after`` events, no [DONE] /
  message_stop and no chunked terminator (non-streamed: same as ``truncated``);
* ``stream-error`` (``after=3``): an in-stream error event after ``after`` events
  (non-streamed: a 500);
* ``no-usage`` / ``zero-usage`` / ``bad-usage``: usage omitted / all zero / malformed;
* ``redirect``: 302 to ``/_sim/redirect-target`` (which logs any client following it);
* ``ok``: no fault (useful in scripts).

Selection, first match wins: header ``x-sim-fault``; a ``/fault/<spec>`` path prefix;
the scripted queue (completion endpoints only); a model name ending in
``@fault=<spec>``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from urllib.parse import unquote

# name -> accepted parameters with their defaults
NAMED: dict[str, dict[str, float]] = {
    "refuse": {},
    "hang": {},
    "html": {},
    "truncated": {},
    "empty": {},
    "oversized": {"mb": 20},
    "drip": {"ms": 3000, "bytes": 8},
    "endless": {"ms": 100},
    "cut": {"after": 3},
    "stream-error": {"after": 3},
    "no-usage": {},
    "zero-usage": {},
    "bad-usage": {},
    "redirect": {},
}
STATUS_PARAMS: dict[str, float] = {"ra": 0}
USAGE_MODES = {"no-usage": "none", "zero-usage": "zero", "bad-usage": "bad"}
MODEL_MARKER = "@fault="


class FaultError(ValueError):
    """A spec that does not parse; answered with a 400 so a typo is never silent."""


@dataclass(frozen=True, slots=True)
class Fault:
    spec: str
    name: str  # "status" for a bare status code
    status: int | None = None
    params: tuple[tuple[str, float], ...] = ()

    def param(self, key: str) -> float:
        defaults = STATUS_PARAMS if self.name == "status" else NAMED[self.name]
        return dict(self.params).get(key, defaults[key])

    def has(self, key: str) -> bool:
        return any(name == key for name, _ in self.params)

    @property
    def usage_mode(self) -> str:
        return USAGE_MODES.get(self.name, "normal")


def parse_fault(spec: str) -> Fault | None:
    """The Fault a spec names; None for ``ok``."""
    spec = spec.strip()
    name, _, raw_params = spec.partition(":")
    name = name.lower()
    if name == "ok" and not raw_params:
        return None
    status: int | None = None
    if name.isdigit() and len(name) == 3:
        status = int(name)
        if not 400 <= status <= 599:
            raise FaultError(f"fault status must be 400-599, got {spec!r}")
        allowed, name = STATUS_PARAMS, "status"
    elif name in NAMED:
        allowed = NAMED[name]
    else:
        raise FaultError(f"unknown fault {spec!r}")
    params: list[tuple[str, float]] = []
    for item in filter(None, raw_params.split(",")):
        key, sep, value = item.partition("=")
        if not sep or key not in allowed:
            raise FaultError(f"fault {spec!r}: unknown parameter {item!r}")
        try:
            number = float(value)
        except ValueError:
            raise FaultError(f"fault {spec!r}: {key} must be a number") from None
        if number < 0:
            raise FaultError(f"fault {spec!r}: {key} must not be negative")
        params.append((key, number))
    return Fault(spec, name, status, tuple(params))


@dataclass(frozen=True, slots=True)
class PathControls:
    api_path: str
    fault: str | None = None
    latency_ms: float | None = None
    tokens_per_second: float | None = None
    cached_tokens: float | None = None


def parse_path_controls(path: str) -> PathControls:
    """Strip leading ``/fault/<spec>``, ``/latency/<ms>``, ``/tps/<n>`` and ``/cached/<n>``.

    They let a gateway provider's base URL (``http://sim/fault/500/v1``) select a
    behaviour for every request it sends, in any order and combination.
    """
    fault: str | None = None
    latency: float | None = None
    tps: float | None = None
    cached: float | None = None
    segments = path.split("/")
    index = 1
    while index + 1 < len(segments) and segments[index] in ("fault", "latency", "tps", "cached"):
        kind, value = segments[index], unquote(segments[index + 1])
        if kind == "fault":
            fault = value
        else:
            try:
                number = float(value)
            except ValueError:
                raise FaultError(f"/{kind}/ needs a number, got {value!r}") from None
            if kind == "latency":
                latency = number
            elif kind == "cached":
                cached = number
            else:
                tps = number
        index += 2
    api_path = "/" + "/".join(segments[index:])
    return PathControls(api_path, fault, latency, tps, cached)


def select_fault(
    *,
    header: str | None,
    path: str | None,
    script: deque[str] | None,
    model: str | None,
) -> str | None:
    """The spec that applies to one request; pops the script only when it is consulted."""
    if header:
        return header
    if path:
        return path
    if script:
        return script.popleft()
    if model and MODEL_MARKER in model:
        return model.rpartition(MODEL_MARKER)[2]
    return None
