"""The benchmark's Markdown: targets vs this run first, then the raw numbers behind them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.load.openloop import OpenLoopResult
from tests.load.streaming import OpenStreamsResult, StreamResult
from tests.load.wrk import WrkResult

# Label prefix of the streaming points taken against a token-paced upstream.
PACED = "paced "


@dataclass
class Results:
    meta: dict[str, Any] = field(default_factory=dict)
    # (path, connections) -> result; path is "direct", "gateway" or "litellm"
    wrk: dict[tuple[str, int], WrkResult] = field(default_factory=dict)
    warmups: list[WrkResult] = field(default_factory=list)
    streams: dict[tuple[str, int], StreamResult] = field(default_factory=dict)
    startups: list[dict[str, Any]] = field(default_factory=list)
    rss: list[dict[str, Any]] = field(default_factory=list)  # {"after", "requests", "rss_mb"}
    open_streams: OpenStreamsResult | None = None
    open_streams_rss_mb: float | None = None
    held: OpenLoopResult | None = None
    held_rss: dict[str, float] = field(default_factory=dict)
    litellm: dict[str, Any] = field(default_factory=dict)
    profile: Any = None
    notes: list[str] = field(default_factory=list)
    log_errors: dict[str, dict[str, int]] = field(default_factory=dict)  # process -> event -> n

    def core_failures(self) -> int:
        """Failed requests in the closed-loop points (warm-ups included): should be 0."""
        return (
            sum(r.failed for r in self.wrk.values())
            + sum(r.failed for r in self.warmups)
            + sum(r.failed for r in self.streams.values())
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "wrk": [r.as_dict() | {"path": p} for (p, _), r in self.wrk.items()],
            "warmups": [r.as_dict() for r in self.warmups],
            "streams": [r.as_dict() | {"path": p} for (p, _), r in self.streams.items()],
            "startups": self.startups,
            "rss": self.rss,
            "open_streams": self.open_streams.as_dict() if self.open_streams else None,
            "open_streams_rss_mb": self.open_streams_rss_mb,
            "held": self.held.as_dict() if self.held else None,
            "held_rss": self.held_rss,
            "litellm": self.litellm,
            "core_failures": self.core_failures(),
            "log_errors": self.log_errors,
            "notes": self.notes,
        }


def _ms(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f} ms"
    if abs(value) >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def _us(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f} µs"


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.0f} %"


def _verdict(ok: bool | None) -> str:
    return "not run" if ok is None else ("met" if ok else "**not met**")


def _rss_after(results: Results, requests: int) -> dict[str, Any] | None:
    return next((r for r in results.rss if r["requests"] >= requests), None)


def _startup(results: Results, cold: bool) -> dict[str, Any] | None:
    return next((s for s in results.startups if s["cold"] is cold), None)


def targets(results: Results) -> list[tuple[str, str, str, bool | None]]:
    """(what, target, measured, met?) for the issue's targets; None = not measured."""
    rows: list[tuple[str, str, str, bool | None]] = []
    d1, g1 = results.wrk.get(("direct", 1)), results.wrk.get(("gateway", 1))
    if d1 and g1:
        added50, added99 = g1.p50_ms - d1.p50_ms, g1.p99_ms - d1.p99_ms
        rows.append(("added median latency, c=1", "≤ 1 ms", _ms(added50), added50 <= 1))
        rows.append(("added p99 latency, c=1", "≤ 5 ms", _ms(added99), added99 <= 5))
    g16 = results.wrk.get(("gateway", 16))
    if g16:
        rows.append(
            (
                "gateway throughput, c=16",
                "≥ 1,500 rps (aim 2,500)",
                f"{g16.rps:,.0f} rps",
                g16.rps >= 1500,
            )
        )
    sd, sg = results.streams.get(("direct", 16)), results.streams.get(("gateway", 16))
    if sd and sg:
        added = sg.ttft(50) - sd.ttft(50)
        rows.append(
            ("streaming added TTFT (p50), c=16, unpaced upstream", "≤ 2 ms", _ms(added), added <= 2)
        )
    pd = results.streams.get((PACED + "direct", 16))
    pg = results.streams.get((PACED + "gateway", 16))
    if pd and pg:
        added = pg.ttft(50) - pd.ttft(50)
        rows.append(
            ("streaming added TTFT (p50), c=16, paced upstream", "≤ 2 ms", _ms(added), added <= 2)
        )
    if results.open_streams:
        o = results.open_streams
        ok = o.failed == 0 and o.completed == o.requested
        rows.append(
            (
                f"{o.requested:,} concurrent open streams",
                "no error",
                f"{o.completed:,} completed, peak {o.peak_open:,} open, {o.failed} errors",
                ok,
            )
        )
    else:
        rows.append(("1,000 concurrent open streams", "no error", "—", None))
    after = _rss_after(results, 20_000)
    if after:
        rows.append(
            (
                "gateway RSS after 20,000 requests",
                "≤ 150 MB",
                f"{after['rss_mb']:.0f} MB (after {after['requests']:,})",
                after["rss_mb"] <= 150,
            )
        )
    elif results.rss:
        last = results.rss[-1]
        rows.append(
            (
                "gateway RSS after 20,000 requests",
                "≤ 150 MB",
                f"{last['rss_mb']:.0f} MB (only {last['requests']:,} served)",
                None,
            )
        )
    warm, cold = _startup(results, False), _startup(results, True)
    if warm or cold:
        s = warm or cold
        label = "bytecode cached" if warm else "cold, compiling"
        rows.append(
            (
                f"start-up to first completion ({label})",
                "≤ 3 s",
                f"{s['completion_s']:.2f} s",
                s["completion_s"] <= 3,
            )
        )
    if results.held:
        h = results.held
        rows.append(
            (
                f"held load {h.rate:.0f} rps x {h.seconds:.0f} s, upstream 1.5 s: served",
                "≥ 99.9 %",
                f"{h.served_pct:.2f} %",
                h.served_pct >= 99.9,
            )
        )
        rows.append(
            ("held load p99", "≤ 1.6 s", _ms(h.p99_ms), h.p99_ms <= 1600 if h.ok else False)
        )
    else:
        rows.append(("held load 500 rps, upstream 1.5 s", "≥ 99.9 %, p99 ≤ 1.6 s", "—", None))
    return rows


def render(results: Results) -> str:
    m = results.meta
    out = [
        f"### Switchyard gateway benchmark ({m.get('mode', '')})",
        "",
        f"{m.get('when', '')} · {m.get('machine', '')} · {m.get('database', '')} · "
        f"wrk 1 thread, {m.get('seconds', 0):g} s per point after a "
        f"{m.get('warmup', 0):g} s warm-up · everything on 127.0.0.1, sharing the cores · "
        f"CPUs {m.get('busy_before', 0)} % busy before the start, load average "
        f"{m.get('load_before', 0):.1f} → {m.get('load_after', 0):.1f}.",
        "",
        "| target (issue) | goal | this run | |",
        "|---|---|---|---|",
    ]
    out += [f"| {w} | {t} | {v} | {_verdict(ok)} |" for w, t, v, ok in targets(results)]

    out += [
        "",
        "Non-streaming `POST /v1/chat/completions` (wrk, closed loop); "
        "added = gateway - direct at the same concurrency.",
        "",
        "| path | c | rps | p50 | p90 | p99 | max | added p50 | added p99 "
        "| rps vs direct | server CPU / request | other load | non-2xx | socket errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (path, c), r in sorted(results.wrk.items(), key=lambda i: (i[0][1], i[0][0] != "direct")):
        direct = results.wrk.get(("direct", c))
        if path == "direct" or direct is None:
            added50 = added99 = ratio = "—"
        else:
            added50 = _ms(r.p50_ms - direct.p50_ms)
            added99 = _ms(r.p99_ms - direct.p99_ms)
            ratio = f"{r.rps / direct.rps:.2f}x" if direct.rps else "—"
        out.append(
            f"| {path} | {c} | {r.rps:,.0f} | {_ms(r.p50_ms)} | {_ms(r.p90_ms)} | "
            f"{_ms(r.p99_ms)} | {_ms(r.max_ms)} | {added50} | {added99} | {ratio} | "
            f"{_us(r.server_cpu_us)} | {_pct(r.foreign_cpu_pct)} | "
            f"{r.non_2xx} | {r.socket_errors} |"
        )

    if results.streams:
        out += [
            "",
            "Streaming (`stream: true`, aiohttp client, closed loop): time to the first "
            "`data:` line, and to `[DONE]`. Unpaced, the upstream sends a whole answer at once, "
            "so sixteen clients keep the worker saturated and the TTFT is mostly their queue; "
            f"{PACED.strip()}: the upstream streams {m.get('paced_upstream', '')}, as a model "
            "does, and the TTFT is the relay's own.",
            "",
            "| path | c | streams/s | TTFT p50 | TTFT p99 | added TTFT p50 | added TTFT p99 "
            "| whole stream p50 | server CPU / stream | other load | errors |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for (path, c), s in sorted(
            results.streams.items(),
            key=lambda i: (i[0][0].startswith(PACED), i[0][1], not i[0][0].endswith("direct")),
        ):
            base = PACED + "direct" if path.startswith(PACED) else "direct"
            direct = results.streams.get((base, c))
            if path == base or direct is None:
                a50 = a99 = "—"
            else:
                a50, a99 = _ms(s.ttft(50) - direct.ttft(50)), _ms(s.ttft(99) - direct.ttft(99))
            out.append(
                f"| {path} | {c} | {s.streams_per_s:,.0f} | {_ms(s.ttft(50))} | "
                f"{_ms(s.ttft(99))} | {a50} | {a99} | {_ms(s.total(50))} | "
                f"{_us(s.server_cpu_us)} | {_pct(s.foreign_cpu_pct)} | {s.failed} |"
            )

    if results.startups or results.rss:
        out += ["", "Gateway process (one uvicorn worker):", ""]
        out += ["| measurement | value |", "|---|---|"]
        for s in results.startups:
            kind = "cold: no bytecode, compiles on import" if s["cold"] else "bytecode cached"
            out.append(
                f"| start-up ({kind}): spawn → /healthz 200 / → first completion 200 "
                f"| {s['health_s']:.2f} s / {s['completion_s']:.2f} s "
                f"(RSS {s['rss_mb']:.0f} MB) |"
            )
        for r in results.rss:
            out.append(
                f"| RSS after {r['requests']:,} requests ({r['after']}) | {r['rss_mb']:.1f} MB |"
            )

    if results.open_streams:
        o = results.open_streams
        out += [
            "",
            f"{o.requested:,} streams opened at once through the gateway (upstream: "
            f"{m.get('slow_upstream', '')}):",
            "",
            "| completed | peak open | all open after | TTFT p50 / p99 | whole stream p99 "
            "| errors | RSS at the end |",
            "|---|---|---|---|---|---|---|",
            f"| {o.completed:,} / {o.requested:,} | {o.peak_open:,} | "
            f"{'—' if o.all_open_after_s is None else f'{o.all_open_after_s:.2f} s'} | "
            f"{_ms(o.ttft_p50_ms)} / {_ms(o.ttft_p99_ms)} | {_ms(o.total_p99_ms)} | "
            f"{o.failed} {o.errors or ''} | {results.open_streams_rss_mb or 0:.0f} MB |",
        ]

    if results.held:
        h = results.held
        rss = results.held_rss
        out += [
            "",
            f"Held load: {h.rate:.0f} requests/s offered open-loop for {h.seconds:.0f} s "
            f"(upstream answers after {m.get('held_latency_ms', 1500):g} ms); latency from each "
            "request's scheduled time.",
            "",
            "| offered | served (200) | served % | p50 | p90 | p99 | p99.9 | max | peak in flight "
            "| errors | RSS start / peak / end | gateway CPU | other load |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
            f"| {h.offered:,} | {h.ok:,} | {h.served_pct:.2f} % | {_ms(h.p50_ms)} | "
            f"{_ms(h.p90_ms)} | {_ms(h.p99_ms)} | {_ms(h.p999_ms)} | {_ms(h.max_ms)} | "
            f"{h.peak_in_flight:,} | {h.failed} {h.errors or ''} | "
            f"{rss.get('start', 0):.0f} / {rss.get('peak', 0):.0f} / {rss.get('end', 0):.0f} MB | "
            f"{rss.get('cpu_pct', 0):.0f} % of a core, {_us(rss.get('cpu_us'))} / request | "
            f"{_pct(rss.get('foreign_pct'))} |",
        ]

    if results.litellm:
        out += ["", f"LiteLLM: {results.litellm.get('status', '')}"]

    if results.profile is not None:
        p = results.profile
        out += [
            "",
            f"py-spy on the gateway worker at c=16 ({p.samples:,} samples; "
            "% of samples, bucketed by the innermost library frame):",
            "",
            "| where | % |",
            "|---|---|",
        ]
        out += [f"| {g} | {v:.1f} |" for g, v in p.groups]
        out += ["", "| hottest functions (self) | % |", "|---|---|"]
        out += [f"| `{f}` | {v:.1f} |" for f, v in p.self_top]
        out += ["", "| inclusive (on the stack) | % |", "|---|---|"]
        out += [f"| `{f}` | {v:.1f} |" for f, v in p.total_top]

    if results.notes:
        out += [""] + [f"- {n}" for n in results.notes]
    return "\n".join(out) + "\n"
