"""Small inline-SVG scatter/line plots for the HTML page, with no plotting library.

The page must open offline and stay one file, and these plots need only axes, points, lines and
a legend, which is less code than wiring a plotting library to emit comparable markup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 500, 320
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 58, 16, 30, 46
LEGEND_ROW = 16
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")
PUBLISHED_COLOR = "#333333"
SYNTHETIC_COLOR = "#9a9a9a"
LOG_SCALE_RATIO = 30.0  # beyond this max/min spread a linear axis crushes the small values


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    label: str


@dataclass(frozen=True)
class Series:
    name: str
    points: tuple[Point, ...]
    kind: str = "real"  # "real" | "published" | "synthetic": sets the marker
    connect: bool = False  # draw a line through the points, in x order


def pareto_front(points: list[Point]) -> list[Point]:
    """Points no other point beats on both counts (higher y with lower or equal x), by rising x."""
    front, best_y = [], -math.inf
    for point in sorted(points, key=lambda p: (p.x, -p.y)):
        if point.y > best_y:
            front.append(point)
            best_y = point.y
    return front


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values (1, 2 or 5 times a power of ten) inside [lo, hi]."""
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(count, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks, value = [], start
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


def _tick_text(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.01:
        return f"{value:.0e}".replace("e-0", "e-").replace("e+0", "e")
    return f"{value:g}"


class _Axis:
    def __init__(self, values: list[float], start: float, end: float, log: bool, integer: bool = False):
        self.log, self.start, self.end = log, start, end
        if log:
            lo, hi = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
            self.lo, self.hi = float(lo), float(max(hi, lo + 1))
            self.ticks = [10.0**e for e in range(int(self.lo), int(self.hi) + 1)]
            return
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.08 or max(abs(hi) * 0.05, 1.0)
        lo, hi = lo - pad, hi + pad
        ticks = nice_ticks(lo, hi)
        if integer:
            ticks = sorted({round(v) for v in values} | {int(t) for t in ticks if t == int(t) and lo <= t <= hi})
            ticks = ticks if len(ticks) <= 12 else ticks[:: math.ceil(len(ticks) / 12)]
        self.lo, self.hi, self.ticks = lo, hi, [float(t) for t in ticks if lo <= t <= hi]

    def __call__(self, value: float) -> float:
        v = math.log10(value) if self.log else value
        return self.start + (v - self.lo) / (self.hi - self.lo) * (self.end - self.start)


def _marker(kind: str, x: float, y: float, color: str, tooltip: str, on_front: bool, legend: bool = False) -> str:
    title = f"<title>{escape(tooltip)}</title>"
    cls = f"legend-mark {kind}" if legend else f"point {kind}" + (" on-front" if on_front else "")
    if kind == "published":
        d = f"M{x:.1f},{y - 6:.1f} L{x + 6:.1f},{y:.1f} L{x:.1f},{y + 6:.1f} L{x - 6:.1f},{y:.1f} Z"
        return f'<path class="{cls}" d="{d}" fill="{color}" stroke="#fff" stroke-width="1">{title}</path>'
    if kind == "synthetic":
        return f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="none" stroke="{color}" stroke-width="1.5">{title}</circle>'
    return f'<circle class="{cls}" cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{color}" stroke="#fff" stroke-width="1">{title}</circle>'


def _color(series: Series, index: int) -> str:
    if series.kind == "published":
        return PUBLISHED_COLOR
    if series.kind == "synthetic":
        return SYNTHETIC_COLOR
    return PALETTE[index % len(PALETTE)]


def _legend(series: list[Series], colors: list[str], has_front: bool, top: float) -> tuple[list[str], float]:
    entries = [(s.name, s.kind, c) for s, c in zip(series, colors)]
    if has_front:
        entries.append(("Pareto front", "front", "#000"))
    parts, x, y = [], MARGIN_LEFT, top
    for name, kind, color in entries:
        width = 22 + 6.5 * len(name)
        if x + width > WIDTH - MARGIN_RIGHT and x > MARGIN_LEFT:
            x, y = MARGIN_LEFT, y + LEGEND_ROW
        if kind == "front":
            parts.append(f'<line x1="{x:.1f}" y1="{y - 4:.1f}" x2="{x + 14:.1f}" y2="{y - 4:.1f}" stroke="#000" stroke-dasharray="4 3" stroke-width="1.5"/>')
        else:
            parts.append(_marker(kind, x + 7, y - 4, color, name, False, legend=True))
        parts.append(f'<text x="{x + 18:.1f}" y="{y:.1f}" font-size="11">{escape(name)}</text>')
        x += width
    return parts, y


def render_plot(
    series: list[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    plot_id: str,
    front_over: tuple[str, ...] = (),
    integer_x: bool = False,
) -> str | None:
    """An <svg> element, or None when no series has a point. `front_over`: series kinds whose points form the Pareto front."""
    series = [s for s in series if s.points]
    if not series:
        return None
    xs = [p.x for s in series for p in s.points]
    ys = [p.y for s in series for p in s.points]
    log_x = min(xs) > 0 and max(xs) / min(xs) > LOG_SCALE_RATIO and not integer_x
    plot_bottom = HEIGHT - MARGIN_BOTTOM
    x_axis = _Axis(xs, MARGIN_LEFT, WIDTH - MARGIN_RIGHT, log_x, integer_x)
    y_axis = _Axis(ys, plot_bottom, MARGIN_TOP, False)
    colors = [_color(s, i) for i, s in enumerate(series)]
    front = pareto_front([p for s in series if s.kind in front_over for p in s.points]) if front_over else []
    front_ids = {id(p) for p in front}

    body = [f'<text x="{WIDTH / 2:.0f}" y="18" text-anchor="middle" font-size="13" font-weight="bold">{escape(title)}</text>']
    for tick in x_axis.ticks:
        x = x_axis(tick)
        body.append(f'<line x1="{x:.1f}" y1="{MARGIN_TOP}" x2="{x:.1f}" y2="{plot_bottom}" stroke="#eee"/>')
        body.append(f'<text x="{x:.1f}" y="{plot_bottom + 14}" text-anchor="middle" font-size="10">{_tick_text(tick)}</text>')
    for tick in y_axis.ticks:
        y = y_axis(tick)
        body.append(f'<line x1="{MARGIN_LEFT}" y1="{y:.1f}" x2="{WIDTH - MARGIN_RIGHT}" y2="{y:.1f}" stroke="#eee"/>')
        body.append(f'<text x="{MARGIN_LEFT - 6}" y="{y + 3:.1f}" text-anchor="end" font-size="10">{_tick_text(tick)}</text>')
    body.append(f'<rect x="{MARGIN_LEFT}" y="{MARGIN_TOP}" width="{WIDTH - MARGIN_LEFT - MARGIN_RIGHT}" height="{plot_bottom - MARGIN_TOP}" fill="none" stroke="#888"/>')
    scale = " (log scale)" if log_x else ""
    body.append(f'<text x="{(MARGIN_LEFT + WIDTH - MARGIN_RIGHT) / 2:.0f}" y="{plot_bottom + 32}" text-anchor="middle" font-size="11">{escape(x_label + scale)}</text>')
    body.append(f'<text transform="translate(14,{(MARGIN_TOP + plot_bottom) / 2:.0f}) rotate(-90)" text-anchor="middle" font-size="11">{escape(y_label)}</text>')
    if len(front) > 1:
        coords = " ".join(f"{x_axis(p.x):.1f},{y_axis(p.y):.1f}" for p in front)
        body.append(f'<polyline class="pareto-front" points="{coords}" fill="none" stroke="#000" stroke-dasharray="4 3" stroke-width="1.5"/>')
    for s, color in zip(series, colors):
        if s.connect and len(s.points) > 1:
            coords = " ".join(f"{x_axis(p.x):.1f},{y_axis(p.y):.1f}" for p in sorted(s.points, key=lambda p: p.x))
            body.append(f'<polyline class="series-line" points="{coords}" fill="none" stroke="{color}" stroke-width="1.2"/>')
        for p in s.points:
            x, y = x_axis(p.x), y_axis(p.y)
            if id(p) in front_ids:
                body.append(f'<circle class="front-ring" cx="{x:.1f}" cy="{y:.1f}" r="8" fill="none" stroke="#000" stroke-width="1.2"/>')
            body.append(_marker(s.kind, x, y, color, p.label, id(p) in front_ids))
    legend, last_row = _legend(series, colors, len(front) > 1, HEIGHT + 4)
    height = last_row + 10
    return (
        f'<svg class="plot" id="{escape(plot_id)}" '
        f'width="{WIDTH}" height="{height:.0f}" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'font-family="sans-serif" role="img" aria-label="{escape(title)}">'
        + "".join(body + legend)
        + "</svg>"
    )
