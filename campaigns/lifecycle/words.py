"""The lifecycle predictions in words, for `retain customer` and the preview (one wording for both)."""

from __future__ import annotations

from typing import Any

from campaigns.money import format_money

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def prediction_lines(p: Any, currency: str) -> list[tuple[str, str]]:
    """The predictions in words (the CLI and the preview show these)."""

    def interval(low: float | None, high: float | None, fmt: str = "{:.2f}") -> str:
        return "" if low is None or high is None else f" (80%: {fmt.format(low)}-{fmt.format(high)})"

    lines = [
        ("chance still active", f"{p.p_alive:.0%}"),
        ("expected orders, next 30 days", f"{p.expected_orders_30d:.2f}"),
        (
            "expected orders, next 90 days",
            f"{p.expected_orders_90d:.2f}" + interval(p.expected_orders_90d_low, p.expected_orders_90d_high),
        ),
        ("expected next order (if active)", f"{p.next_order_at:%Y-%m-%d}" if p.next_order_at else "-"),
    ]
    if p.clv_12m is not None:
        lines.append(("spend per order (expected)", format_money(p.spend_per_order, currency)))
        low = format_money(p.clv_12m_low, currency) if p.clv_12m_low is not None else None
        high = format_money(p.clv_12m_high, currency) if p.clv_12m_high is not None else None
        extra = f" (80%: {low}-{high})" if low and high else ""
        lines.append(("predicted 12-month value", format_money(p.clv_12m, currency) + extra))
    if p.preferred_hour is not None:
        day = WEEKDAYS[p.preferred_weekday] if p.preferred_weekday is not None else "-"
        lines.append(("best send time (their time)", f"{p.preferred_hour:02d}:00, best day {day}"))
    return lines
