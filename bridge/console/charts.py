"""Small line charts as inline SVG, rendered on the server: the page loads nothing, runs no chart script."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

WIDTH, HEIGHT = 320, 90
PAD_LEFT, PAD_BOTTOM, PAD_TOP = 40, 14, 6
# Colour-blind-safe palette (Okabe-Ito), one colour per operator in order.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")


def scale(
    points: Sequence[tuple[float, float]], start: float, end: float, top: float
) -> list[tuple[float, float]]:
    """Map ``(time, value)`` into the plot area: time ``start..end`` left to right, value ``0..top``
    bottom to top. Points outside are clamped, so a drawing never leaves its box."""
    span = max(end - start, 1e-9)
    top = max(top, 1e-9)
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    out = []
    for at, value in points:
        x = PAD_LEFT + plot_w * min(1.0, max(0.0, (at - start) / span))
        y = PAD_TOP + plot_h * (1.0 - min(1.0, max(0.0, value / top)))
        out.append((round(x, 1), round(y, 1)))
    return out


def nice_top(value: float) -> float:
    """The axis maximum: ``value`` rounded up to 1, 2 or 5 times a power of ten (at least 1)."""
    if value <= 1:
        return 1.0
    magnitude = 10 ** (len(str(int(value))) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return float(step * magnitude)
    return float(10 * magnitude)  # pragma: no cover - the loop always returns


def _label(value: float, unit: str) -> str:
    text = f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.2g}"
    return f"{text}{unit}"


def line_chart(
    title: str, series: Mapping[str, Sequence[tuple[float, float]]], start: float, end: float, unit: str = ""
) -> str:
    """One chart: a line per series (operator), the value axis from 0 to a round maximum."""
    values = [v for points in series.values() for _, v in points]
    top = nice_top(max(values, default=0.0))
    minutes = max(1, round((end - start) / 60))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{html.escape(title)}">',
        f"<title>{html.escape(title)}</title>",
        f'<line x1="{PAD_LEFT}" y1="{HEIGHT - PAD_BOTTOM}" x2="{WIDTH}" y2="{HEIGHT - PAD_BOTTOM}" '
        'class="axis"/>',
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP}" x2="{PAD_LEFT}" y2="{HEIGHT - PAD_BOTTOM}" class="axis"/>',
        f'<text x="{PAD_LEFT - 4}" y="{PAD_TOP + 8}" text-anchor="end">{_label(top, unit)}</text>',
        f'<text x="{PAD_LEFT - 4}" y="{HEIGHT - PAD_BOTTOM}" text-anchor="end">0</text>',
        f'<text x="{PAD_LEFT}" y="{HEIGHT - 2}">{minutes} min ago</text>',
        f'<text x="{WIDTH}" y="{HEIGHT - 2}" text-anchor="end">now</text>',
    ]
    if not values:
        parts.append(
            f'<text x="{(WIDTH + PAD_LEFT) / 2}" y="{HEIGHT / 2}" text-anchor="middle" class="empty">'
            "no samples yet</text>"
        )
    for index, (name, points) in enumerate(series.items()):
        colour = COLOURS[index % len(COLOURS)]
        coords = " ".join(f"{x},{y}" for x, y in scale(points, start, end, top))
        if len(points) == 1:
            x, y = scale(points, start, end, top)[0]
            parts.append(
                f'<circle cx="{x}" cy="{y}" r="2" fill="{colour}"><title>{html.escape(name)}</title></circle>'
            )
        elif points:
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5">'
                f"<title>{html.escape(name)}</title></polyline>"
            )
    parts.append("</svg>")
    legend = "".join(
        f'<span class="key"><i style="background:{COLOURS[i % len(COLOURS)]}"></i>{html.escape(name)}</span>'
        for i, name in enumerate(series)
        if len(series) > 1
    )
    return "".join(parts) + (f'<div class="legend">{legend}</div>' if legend else "")
