"""Charts as inline SVG, drawn on the server: no JavaScript library, no network, print-friendly.

Each function returns :class:`markupsafe.Markup` (every label is escaped here) with a ``data-chart``
attribute naming the chart, so tests and the browser can find it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from markupsafe import Markup, escape

INK, MUTED, GRID, ACCENT = "#1f2933", "#6b7280", "#ece7df", "#1b6b57"
FONT = "font-family=\"-apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif\""


def pct(v: float) -> str:
    return f"{v * 100:.0f}%"


def money(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    for step in (
        0.05,
        0.1,
        0.2,
        0.25,
        0.5,
        1,
        2,
        2.5,
        5,
        10,
        20,
        25,
        50,
        100,
        200,
        250,
        500,
        1000,
        2000,
        5000,
    ):
        if v <= step * 4:
            return step * 4
    return v * 1.1


def _svg(name: str, width: int, height: int, body: list[str], title: str) -> Markup:
    return Markup(
        f'<svg data-chart="{escape(name)}" viewBox="0 0 {width} {height}" width="100%" style="max-width:{width}px;display:block" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg" {FONT}>'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def line_chart(
    name: str,
    points: Sequence[tuple[str, float | None]],
    *,
    title: str,
    fmt: Callable[[float], str] = pct,
    color: str = ACCENT,
    width: int = 560,
    height: int = 220,
    as_bars: bool = False,
) -> Markup:
    """A line (or bar) chart of labelled values; None values leave a gap. Empty input -> a note."""
    left, right, top, bottom = 48, 12, 14, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, v in points if v is not None]
    body: list[str] = []
    if not values:
        body.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{MUTED}" font-size="13">no data yet</text>'
        )
        return _svg(name, width, height, body, title)
    top_value = _nice_max(max(values))
    for i in range(5):
        y = top + plot_h - plot_h * i / 4
        body.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" fill="{MUTED}">'
            f"{escape(fmt(top_value * i / 4))}</text>"
        )
    marks: list[str] = []  # drawn above the lines
    n = len(points)
    step = plot_w / max(n, 1)
    label_every = max(1, round(n / 8))
    coords: list[tuple[float, float] | None] = []
    for i, (label, value) in enumerate(points):
        x = left + step * (i + 0.5)
        if i % label_every == 0 or i == n - 1 and n <= 8:
            body.append(
                f'<text x="{x:.1f}" y="{height - 8}" text-anchor="middle" font-size="11" fill="{MUTED}">'
                f"{escape(_short_month(label))}</text>"
            )
        if value is None:
            coords.append(None)
            continue
        y = top + plot_h - plot_h * min(value, top_value) / top_value
        coords.append((x, y))
        tip = f"<title>{escape(label)}: {escape(fmt(value))}</title>"
        if as_bars:
            bar_w = max(2.0, step * 0.62)
            marks.append(
                f'<rect data-point x="{x - bar_w / 2:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{top + plot_h - y:.1f}" rx="2" fill="{color}" opacity="0.85">{tip}</rect>'
            )
        else:
            marks.append(f'<circle data-point cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">{tip}</circle>')
    if not as_bars:
        segment: list[str] = []
        for c in [*coords, None]:
            if c is None:
                if len(segment) > 1:
                    body.append(
                        f'<polyline points="{" ".join(segment)}" fill="none" stroke="{color}" '
                        'stroke-width="2.2" stroke-linejoin="round"/>',
                    )
                segment = []
            else:
                segment.append(f"{c[0]:.1f},{c[1]:.1f}")
    return _svg(name, width, height, body + marks, title)


def _short_month(label: str) -> str:
    """'2011-03' -> "Mar 11"; other labels unchanged."""
    months = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
    parts = label.split("-")
    if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit() and 1 <= int(parts[1]) <= 12:
        return f"{months[int(parts[1]) - 1]} {parts[0][2:]}"
    return label


def _heat_color(share: float) -> str:
    """White -> the accent green, for a share in [0, 1] (cohort cells rarely pass 50%)."""
    t = max(0.0, min(1.0, share / 0.5))
    r, g, b = (int(a + (b_ - a) * t) for a, b_ in ((250, 27), (248, 107), (244, 87)))
    return f"rgb({r},{g},{b})"


def cohort_heatmap(
    cohorts: Sequence[Any], *, title: str = "Cohort retention", max_months: int = 12
) -> Markup:
    """Rows: first-order month (with size); columns: months since; cells: share who ordered again."""
    rows = list(cohorts)[-14:]
    cell_w, cell_h, left, top = 38, 22, 104, 26
    cols = min(max_months, max((len(c.retention) - 1 for c in rows), default=0))
    width = left + cell_w * max(cols, 1) + 10
    height = top + cell_h * max(len(rows), 1) + 8
    body: list[str] = []
    if not rows or cols == 0:
        body.append(
            f'<text x="{width / 2}" y="{height / 2 + 4}" text-anchor="middle" fill="{MUTED}" font-size="13">no data yet</text>'
        )
        return _svg("cohorts", max(width, 320), max(height, 60), body, title)
    for k in range(1, cols + 1):
        x = left + cell_w * (k - 1) + cell_w / 2
        body.append(
            f'<text x="{x}" y="{top - 9}" text-anchor="middle" font-size="11" fill="{MUTED}">+{k}</text>'
        )
    for r, cohort in enumerate(rows):
        y = top + cell_h * r
        body.append(
            f'<text x="{left - 8}" y="{y + cell_h / 2 + 4}" text-anchor="end" font-size="11" fill="{INK}">'
            f"{escape(_short_month(cohort.cohort))} "
            f'<tspan fill="{MUTED}">({cohort.size:,})</tspan></text>'
        )
        for k in range(1, cols + 1):
            x = left + cell_w * (k - 1)
            if k >= len(cohort.retention):
                continue
            share = float(cohort.retention[k])
            text_color = "#fff" if share > 0.28 else INK
            body.append(
                f'<rect data-cell x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" rx="3" '
                f'fill="{_heat_color(share)}"><title>{escape(cohort.cohort)} +{k}: {share * 100:.1f}%</title></rect>'
                f'<text x="{x + cell_w / 2}" y="{y + cell_h / 2 + 4}" text-anchor="middle" font-size="10" '
                f'fill="{text_color}">{share * 100:.0f}</text>'
            )
    return _svg("cohorts", width, height, body, title)


def uplift_plot(rows: Sequence[tuple[str, Any]], *, title: str = "Uplift vs holdout (95% CI)") -> Markup:
    """One line per campaign: the uplift (percentage points) as a dot with its 95% interval."""
    usable = [(name, u) for name, u in rows if u.uplift is not None]
    left, right, row_h, top = 150, 24, 30, 12
    width = 560
    height = top + row_h * max(len(usable), 1) + 26
    body: list[str] = []
    if not usable:
        body.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{MUTED}" font-size="13">'
            "no campaign has both sent and holdout rows yet</text>"
        )
        return _svg("uplift", width, height, body, title)
    span = max(max(abs(u.ci_low), abs(u.ci_high)) for _, u in usable) or 0.01
    span = _nice_max(span * 1.05) / 2 if span < 0.5 else 1.0
    plot_w = width - left - right

    def x_of(v: float) -> float:
        return left + plot_w * (v + span) / (2 * span)

    base = top + row_h * len(usable)
    for v in (-span, -span / 2, 0.0, span / 2, span):
        x = x_of(v)
        stroke = MUTED if v == 0 else GRID
        body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{base}" stroke="{stroke}"/>')
        body.append(
            f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle" font-size="11" fill="{MUTED}">'
            f"{v * 100:+.1f} pt</text>"
        )
    for i, (name, u) in enumerate(usable):
        y = top + row_h * i + row_h / 2
        color = ACCENT if u.significant and u.uplift > 0 else "#b4472f" if u.significant else MUTED
        body.append(
            f'<text x="{left - 10}" y="{y + 4:.1f}" text-anchor="end" font-size="12" fill="{INK}">{escape(name)}</text>'
            f'<line x1="{x_of(max(u.ci_low, -span)):.1f}" x2="{x_of(min(u.ci_high, span)):.1f}" y1="{y:.1f}" '
            f'y2="{y:.1f}" stroke="{color}" stroke-width="3" stroke-linecap="round"/>'
            f'<circle data-point cx="{x_of(max(-span, min(span, u.uplift))):.1f}" cy="{y:.1f}" r="5" fill="{color}">'
            f"<title>{escape(name)}: {u.uplift * 100:+.2f} pt "
            f"[{u.ci_low * 100:+.2f}, {u.ci_high * 100:+.2f}]</title></circle>"
        )
    return _svg("uplift", width, height, body, title)
