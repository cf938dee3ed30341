"""Charts drawn on the server as SVG strings: no JavaScript, nothing to load, printable.

Every chart function returns a SafeString in which each piece of text (a provider's or
model's name comes from catalog sync and is not to be trusted) was escaped where it was
inserted. Colours come from app.css (`.chart .bar`, `.bar-alt`, `.axis`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from typing import Any

from django.utils.html import escape
from django.utils.safestring import mark_safe

from usage.dashboard import Dashboard, Window
from usage.models import LATENCY_BUCKETS_MS

HEIGHT = 220
TOP, BOTTOM = 16, 22
# Up to this many columns a chart leaves gaps between its bars; past it (a week by the
# hour) the gaps would be all you see on a phone.
MAX_COLUMNS_WITH_GAPS = 60
# Horizontal bars (tokens by provider): a row is a label line and a bar.
ROW_LABEL, ROW_BAR = 16, 18
ROW = ROW_LABEL + ROW_BAR + 10


@dataclass(frozen=True, slots=True)
class Series:
    """One stacked layer of a chart: its name (legend, tooltips) and how it is painted."""

    name: str
    css_class: str = "bar"
    style: str = ""


REQUESTS = Series("Requests", "bar")
ERRORS = Series("Errors", "bar", "fill: var(--bad)")


@dataclass(frozen=True, slots=True)
class Column:
    """A vertical bar (its layers stacked bottom first), its axis label and its tooltip."""

    tick: str
    values: tuple[float, ...]
    title: str


@dataclass(frozen=True, slots=True)
class Row:
    """A horizontal bar: a label and (name, value) segments drawn left to right."""

    label: str
    parts: tuple[tuple[str, float], ...]
    title: str


# --- numbers as people read them ------------------------------------------------------------


def format_count(value: int | float) -> str:
    return f"{round(value):,}"


def counted(value: int | float, noun: str, plural: str | None = None) -> str:
    """1 attempt, 2 attempts, 1,000 attempts."""
    number = round(value)
    return f"{number:,} {noun if number == 1 else (plural or noun + 's')}"


def short_count(value: float) -> str:
    """1234 -> 1.2k; for axis labels."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:.1f}".rstrip("0").rstrip(".") + suffix
    return f"{value:.0f}" if value == int(value) else f"{value:.2g}"


def format_usd(amount: Decimal | float | int) -> str:
    """Dollars with cents from $1 up; smaller amounts keep three significant digits."""
    amount = Decimal(amount)
    if amount == 0:
        return "$0.00"
    if abs(amount) >= 1:
        return f"${amount:,.2f}"
    digits = max(2, -amount.adjusted() + 2)
    return f"${amount:.{min(digits, 8)}f}"


def format_cents(amount: Decimal) -> str:
    """Dollars and cents (what caps are set in); below a cent, format_usd's digits."""
    if 0 < abs(amount) < Decimal("0.01"):
        return format_usd(amount)
    return f"${amount.quantize(Decimal('0.01')):,}"


def short_usd(value: float) -> str:
    if value == 0:
        return "$0"
    if abs(value) >= 1000:
        return "$" + short_count(value)
    if abs(value) >= 1:
        return f"${value:,.2f}".rstrip("0").rstrip(".")
    # Axis labels: plain decimals with two significant digits, never 1e-05.
    return format_usd(Decimal(str(value)).normalize()).rstrip("0")


def format_ms(ms: int | float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 1000:
        return f"{ms / 1000:.1f}".removesuffix(".0") + " s"
    return f"{round(ms)} ms"


def nice_ceiling(value: float, *, whole: bool = False) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above `value` (an axis maximum).

    `whole`: the axis counts things, so its maximum and its half-way gridline must both be
    whole numbers (never "2.5 requests"): up to 10, the next even number (2 at least);
    above, 2.5 x 10^k is skipped (its half, 12.5, is not whole).
    """
    if whole and value <= 10:
        return float(max(2, math.ceil(value) + math.ceil(value) % 2))
    if value <= 0:
        return 1.0
    magnitude = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10) if whole else (1, 2, 2.5, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return 10 * magnitude  # pragma: no cover - the loop always returns


def time_ticks(starts: Sequence[datetime], bucket: str) -> list[str]:
    """Axis labels for buckets starting at `starts`: a few, never crowded; "" elsewhere."""
    count = len(starts)
    labels = []
    for index, start in enumerate(starts):
        if bucket == "hour" and count <= 48:
            show = start.hour % (3 if count <= 24 else 6) == 0
            text = f"{start:%H}:00" if start.hour else f"{start:%b} {start.day}"
        elif bucket == "hour":
            show = start.hour == 0
            text = f"{start:%b} {start.day}"
        else:
            every = max(1, math.ceil(count / 10))
            show = (count - 1 - index) % every == 0
            text = f"{start:%b} {start.day}"
        labels.append(text if show else "")
    return labels


# --- SVG --------------------------------------------------------------------------------------
#
# Horizontal positions are percentages and vertical ones pixels, with no viewBox: a chart
# fills its card at any screen width while its text keeps the stylesheet's size (a scaled
# viewBox shrinks 10 px text to 4 px on a phone). Only the cost line is drawn in a nested,
# stretched viewBox, with a stroke that does not stretch.
#
# Built as plain strings, not with format_html (a week by the hour is 168 columns of several
# elements, and its per-argument escaping cost ~40 ms a chart). Numbers are formatted by
# `_pct` / `_px`; every text goes through `escape` where it is inserted; the finished chart
# is marked safe once, in `_frame`.

# Axis labels sit on the plot, above their gridline, with a halo to stay readable over bars.
HALO = "paint-order: stroke; stroke: var(--surface); stroke-width: 3px"
PENDING = (
    "Not complete yet: the rollup job has not counted all of this time; it fills in as the job "
    "catches up."
)


def _pct(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") + "%"


def _px(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _frame(chart_id: str, title: str, description: str, height: int, body: Sequence[str]) -> str:
    chart_id = escape(chart_id)
    svg = (
        f'<svg class="chart" id="{chart_id}" width="100%" height="{height}" '
        f'style="height: {height}px; overflow: visible" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc">'
        f'<title id="{chart_id}-title">{escape(title)}</title>'
        f'<desc id="{chart_id}-desc">{escape(description)}</desc>{"".join(body)}</svg>'
    )
    return mark_safe(svg)  # noqa: S308 - every text in it went through escape()


def _y_axis(maximum: float, height: int, value_format: Callable[[float], str]) -> list:
    """Gridlines at 0, ½ and the maximum, each labelled at its left end."""
    plot_height = height - TOP - BOTTOM
    parts = []
    for fraction in (0, 0.5, 1):
        y = TOP + plot_height * (1 - fraction)
        parts.append(
            f'<line class="axis" x1="0" x2="100%" y1="{_px(y)}" y2="{_px(y)}"/>'
            f'<text x="2" y="{_px(y - 3)}" style="{HALO}">'
            f"{escape(value_format(maximum * fraction))}</text>"
        )
    return parts


def _paint(series: Series) -> str:
    style = f' style="{escape(series.style)}"' if series.style else ""
    return f' class="{escape(series.css_class)}"{style}'


def _tick(x: float, height: int, text: str) -> str:
    return f'<text x="{_pct(x)}" y="{height - 6}" text-anchor="middle">{escape(text)}</text>'


def _pending(slot: float, pending: range | None, height: int) -> list:
    """A light band over the columns the rollups do not hold in full yet."""
    if not pending:
        return []
    x = slot * pending.start
    return [
        f'<g><title>{escape(PENDING)}</title><rect x="{_pct(x)}" y="{TOP}" '
        f'width="{_pct(slot * len(pending))}" height="{height - TOP - BOTTOM}" '
        'style="fill: var(--bg); opacity: 0.8"/></g>'
    ]


def column_chart(
    columns: Sequence[Column],
    *,
    series: Sequence[Series],
    chart_id: str,
    title: str,
    description: str,
    value_format: Callable[[float], str] = short_count,
    height: int = HEIGHT,
    pending: range | None = None,
    whole: bool = False,
) -> str:
    """Vertical bars, stacked by `series`, with a value axis and sparse axis labels;
    columns at the indexes `pending` are marked incomplete. `whole`: the values are counts,
    so the axis is labelled in whole numbers."""
    plot_height = height - TOP - BOTTOM
    maximum = nice_ceiling(max((sum(c.values) for c in columns), default=0), whole=whole)
    slot = 100 / max(len(columns), 1)
    # Gaps between bars while there is room for them (a week by the hour has none).
    gap = slot * 0.2 if len(columns) <= MAX_COLUMNS_WITH_GAPS else 0
    bar_width = _pct(max(slot - gap, 0.05))
    paints = [_paint(layer) for layer in series]
    parts = _pending(slot, pending, height)
    floor = TOP + plot_height
    bars = []
    for index, column in enumerate(columns):
        left = index * slot
        x = _pct(left + gap / 2)
        base = floor
        rects = []
        for value, paint in zip(column.values, paints, strict=False):
            size = plot_height * value / maximum
            if size <= 0:
                continue
            base -= size
            rects.append(
                f'<rect{paint} x="{x}" y="{_px(base)}" width="{bar_width}" height="{_px(size)}"/>'
            )
        # One invisible full-height target per column carries the tooltip, so an empty
        # column can be hovered too.
        bars.append(
            f'<g><title>{escape(column.title)}</title><rect x="{_pct(left)}" y="{TOP}" '
            f'width="{_pct(slot)}" height="{plot_height}" fill="transparent"/>'
            f"{''.join(rects)}</g>"
        )
        if column.tick:
            bars.append(_tick(left + slot / 2, height, column.tick))
    axis = _y_axis(maximum, height, value_format)
    return _frame(chart_id, title, description, height, [*parts, *bars, *axis])


def line_chart(
    columns: Sequence[Column],
    *,
    chart_id: str,
    title: str,
    description: str,
    value_format: Callable[[float], str] = short_count,
    height: int = HEIGHT,
    pending: range | None = None,
) -> str:
    """A line through each column's first value over a light area, but at the indexes
    `pending` (those points are dots only: their values are not complete yet)."""
    plot_height = height - TOP - BOTTOM
    values = [column.values[0] if column.values else 0 for column in columns]
    maximum = nice_ceiling(max(values, default=0))
    slot = 100 / max(len(columns), 1)
    pending = pending or range(0)
    runs: list[list[tuple[float, float]]] = [[]]  # the complete points, in unbroken runs
    for index, value in enumerate(values):
        if index in pending:
            if runs[-1]:
                runs.append([])
            continue
        runs[-1].append(((index + 0.5) * slot * 10, plot_height * (1 - value / maximum)))
    parts = _pending(slot, pending, height)
    for points in filter(None, runs):
        line = " ".join(f"{_px(x)},{_px(y)}" for x, y in points)
        area = f"{_px(points[0][0])},{plot_height} {line} {_px(points[-1][0])},{plot_height}"
        parts.append(
            f'<svg x="0" y="{TOP}" width="100%" height="{plot_height}" '
            f'viewBox="0 0 1000 {plot_height}" preserveAspectRatio="none">'
            f'<polygon class="bar-alt" style="opacity: 0.35" points="{area}"/>'
            f'<polyline points="{line}" vector-effect="non-scaling-stroke" '
            'style="fill: none; stroke: var(--brand); stroke-width: 2; '
            'stroke-linejoin: round"/></svg>'
        )
    radius = 2.5 if len(columns) <= MAX_COLUMNS_WITH_GAPS else 0
    for index, (value, column) in enumerate(zip(values, columns, strict=True)):
        x = (index + 0.5) * slot
        y = TOP + plot_height * (1 - value / maximum)
        dot = max(radius, 2) if index in pending else radius
        parts.append(
            f'<g><title>{escape(column.title)}</title><rect x="{_pct(index * slot)}" '
            f'y="{TOP}" width="{_pct(slot)}" height="{plot_height}" fill="transparent"/>'
            f'<circle class="bar" cx="{_pct(x)}" cy="{_px(y)}" r="{dot}"/></g>'
        )
        if column.tick:
            parts.append(_tick(x, height, column.tick))
    parts += _y_axis(maximum, height, value_format)
    return _frame(chart_id, title, description, height, parts)


def bar_rows(
    rows: Sequence[Row],
    *,
    chart_id: str,
    title: str,
    description: str,
    value_format: Callable[[float], str] = short_count,
) -> str:
    """Horizontal bars, one per row under its label and total, split into named segments
    (alternating shades); a segment's name shows inside it as far as it fits."""
    height = TOP + ROW * max(len(rows), 1)
    maximum = max((sum(value for _, value in row.parts) for row in rows), default=0) or 1
    parts = []
    for index, row in enumerate(rows):
        top = index * ROW + 4
        bar_top = top + ROW_LABEL
        x = 0.0
        segments = []
        for number, (name, value) in enumerate(row.parts):
            size = 100 * value / maximum
            if size <= 0:
                continue
            css, ink = ("bar", "#fff") if number % 2 == 0 else ("bar-alt", "var(--ink)")
            # A nested svg clips the name to its segment, whatever the screen's width.
            segments.append(
                f'<svg x="{_pct(x)}" y="{bar_top}" width="{_pct(size)}" height="{ROW_BAR}">'
                f"<title>{escape(name)}: {escape(value_format(value))}</title>"
                f'<rect class="{css}" width="100%" height="100%"/>'
                f'<text x="4" y="{ROW_BAR - 5}" style="fill: {ink}">{escape(name)}</text></svg>'
            )
            x += size
        total = sum(value for _, value in row.parts)
        parts.append(
            f"<g><title>{escape(row.title)}</title>"
            f'<text x="0" y="{top + ROW_LABEL - 4}" style="fill: var(--ink)">'
            f"{escape(row.label)}</text>"
            f'<text x="100%" y="{top + ROW_LABEL - 4}" text-anchor="end">'
            f"{escape(value_format(total))}</text>{''.join(segments)}</g>"
        )
    return _frame(chart_id, title, description, height, parts)


def legend(series: Sequence[Series]) -> str:
    """The series' swatches and names, for under a chart."""
    swatches = "".join(
        f'<span><svg class="chart" width="10" height="10" style="width: 10px; height: 10px" '
        f'aria-hidden="true"><rect{_paint(s)} width="10" height="10" rx="2"/></svg> '
        f"{escape(s.name)}</span>"
        for s in series
    )
    return mark_safe(f'<div class="legend">{swatches}</div>')  # noqa: S308 - escaped above


# --- the usage dashboard's tiles and charts ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tile:
    """A stat tile: a label, the big value, a line under it, and a tooltip."""

    label: str
    value: str
    detail: str = ""
    title: str = ""


NBSP = "\u00a0"
# Above this a tile shows a count as 12.3M (the exact number in its tooltip): a tile is
# ~130 px wide on a desktop, and "52,254,808" broke in the middle of the number.
TILE_EXACT_BELOW = 1_000_000


def _count_tile(label: str, count: int, detail: str, noun: str) -> Tile:
    if count < TILE_EXACT_BELOW:
        return Tile(label, format_count(count), detail)
    return Tile(label, short_count(count), detail, counted(count, noun))


LATENCY_NOTE = (
    "An estimate: the hourly rollups keep latencies as a histogram, so the bucket is exact "
    "and the value inside it assumes latencies spread evenly across the bucket."
)


EN_DASH = "\u2013"


def ms_range(low: int, high: int) -> str:
    """up to 100 ms, 100-250 ms, 500 ms-1 s, 1-2.5 s (with an en dash)."""
    if low == 0:
        return f"up to {format_ms(high)}"
    if high < 1000:
        return f"{low}{EN_DASH}{high} ms"
    if low >= 1000:
        return f"{format_ms(low).removesuffix(' s')}{EN_DASH}{format_ms(high)}"
    return f"{format_ms(low)}{EN_DASH}{format_ms(high)}"


def _percentile_tile(label: str, report: Dashboard, fraction: float, detail: str) -> Tile:
    """A percentile's estimate, with the histogram bucket that certainly holds it."""
    percentile = report.totals.latency_percentile(fraction)
    if percentile is None:
        return Tile(label, "-", detail or "no attempts")
    if percentile.high_ms is None:
        value = f"> {format_ms(percentile.low_ms)}"
        bucket = "above the histogram's last bound"
    else:
        value = format_ms(percentile.ms)  # "(est.)" in the label: "≈ 194 ms" did not fit
        bucket = ms_range(percentile.low_ms, percentile.high_ms)
        bucket = f"in {bucket}" if percentile.low_ms else bucket
    detail = " · ".join(part for part in (bucket, detail) if part)
    return Tile(label, value.replace(" ", NBSP), detail, LATENCY_NOTE)


def dashboard_tiles(report: Dashboard) -> list[Tile]:
    """The stat tiles: requests, errors and their rate, tokens, cost, latency percentiles."""
    totals = report.totals
    rate = totals.error_rate
    return [
        _count_tile("Requests", totals.requests, "successful attempts", "request"),
        _count_tile(
            "Errors",
            totals.errors,
            f"{rate} % of {counted(totals.attempts, 'attempt')}"
            if rate is not None
            else "no attempts",
            "error",
        ),
        _count_tile(
            "Tokens",
            totals.tokens,
            f"{short_count(totals.input_tokens)} in · "
            f"{short_count(totals.cached_tokens)} cached · "
            f"{short_count(totals.output_tokens)} out",
            "token",
        ),
        Tile("Cost", format_usd(totals.cost_usd), "at provider prices"),
        _percentile_tile(
            "Latency p50 (est.)",
            report,
            0.5,
            f"mean {format_ms(totals.avg_latency_ms)}" if totals.attempts else "",
        ),
        _percentile_tile("Latency p95 (est.)", report, 0.95, ""),
    ]


def _when(start: datetime, window: Window) -> str:
    if window.bucket == "hour":
        return f"{start:%a %b} {start.day}, {start:%H}:00 UTC"
    return f"{start:%a %b} {start.day}"


# The histogram's axis labels and tooltips, one per UsageRollup latency column.
LATENCY_TICKS = (
    *(f"≤{format_ms(bound)}" for bound in LATENCY_BUCKETS_MS),
    f">{format_ms(LATENCY_BUCKETS_MS[-1])}",
)
LATENCY_RANGES = (
    f"Up to {format_ms(LATENCY_BUCKETS_MS[0])}",
    *(
        f"Over {format_ms(low)}, up to {format_ms(high)}"
        for low, high in pairwise(LATENCY_BUCKETS_MS)
    ),
    f"Over {format_ms(LATENCY_BUCKETS_MS[-1])}",
)


def window_text(window: Window) -> str:
    """The window as people read it: hours for the last 24 hours, else inclusive days."""
    if window.period == "24h":
        start, end = window.start, window.end
        return f"{start:%b} {start.day}, {start:%H}:00 - {end:%b} {end.day}, {end:%H}:00 UTC"
    first, last = window.first_day, window.last_day
    if first == last:
        return f"{first:%a %b} {first.day}, {first.year} (UTC)"
    return f"{first:%b} {first.day} - {last:%b} {last.day}, {last.year} (UTC)"


def _incomplete(report: Dashboard) -> range | None:
    """The buckets that may lack records yet: those with hours the rollups do not hold in
    full (from `incomplete_from` to `live_from`). Later hours are read from raw records, up
    to now: complete. None: every bucket is."""
    start, end = report.incomplete_from, report.live_from
    if start is None or end is None:
        return None
    step = report.window.step
    indexes = [
        index
        for index, point in enumerate(report.series)
        if point.start < end and point.start + step > start
    ]
    return range(indexes[0], indexes[-1] + 1) if indexes else None


def dashboard_charts(report: Dashboard) -> dict[str, Any]:
    """The dashboard's four charts as SVG, and the legend of the stacked one."""
    window, series = report.window, report.series
    ticks = time_ticks([point.start for point in series], window.bucket)
    step = "hour" if window.bucket == "hour" else "day"
    pending = _incomplete(report)
    requests = column_chart(
        [
            Column(
                tick,
                (point.requests, point.errors),
                f"{_when(point.start, window)}: {counted(point.requests, 'request')}, "
                f"{counted(point.errors, 'error')}",
            )
            for tick, point in zip(ticks, series, strict=True)
        ],
        series=[REQUESTS, ERRORS],
        whole=True,
        pending=pending,
        chart_id="chart-requests",
        title="Requests over time",
        description=f"Successful requests and errors per {step}.",
    )
    cost = line_chart(
        [
            Column(
                tick,
                (float(point.cost_usd),),
                f"{_when(point.start, window)}: {format_usd(point.cost_usd)}",
            )
            for tick, point in zip(ticks, series, strict=True)
        ],
        pending=pending,
        chart_id="chart-cost",
        title="Cost trend",
        description=f"Cost in US dollars per {step}.",
        value_format=short_usd,
    )
    with_tokens = [group for group in report.providers if group.totals.tokens]
    tokens = bar_rows(
        [
            Row(
                group.label,
                tuple((name, float(count)) for name, count in group.parts)
                or (("(no model)", float(group.totals.tokens)),),
                f"{group.label}: {counted(group.totals.tokens, 'token')}",
            )
            for group in with_tokens
        ],
        chart_id="chart-tokens",
        title="Tokens by provider",
        description="Tokens (input, cached and output) per provider, split by model.",
    )
    buckets = report.totals.latency_buckets
    latency = column_chart(
        [
            Column(tick, (count,), f"{span}: {counted(count, 'attempt')}")
            for tick, span, count in zip(LATENCY_TICKS, LATENCY_RANGES, buckets, strict=True)
        ],
        series=[Series("Attempts", "bar-alt")],
        whole=True,
        chart_id="chart-latency",
        title="Latency histogram",
        description="Attempts per latency range.",
    )
    return {
        "requests": requests,
        "requests_legend": legend([REQUESTS, ERRORS]),
        "cost": cost,
        "tokens": tokens if with_tokens else None,
        "latency": latency,
    }
