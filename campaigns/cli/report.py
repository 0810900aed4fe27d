"""``retain report CAMPAIGN``: clicks, attributed orders and revenue, and uplift per variant (campaigns/report.py)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from campaigns.cli.app import app, open_store, out, print_json, settings
from campaigns.errors import NotFoundError
from campaigns.money import format_money
from campaigns.report import ATTRIBUTION_DAYS, CampaignReport, campaign_report


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def print_report(report: CampaignReport) -> None:
    cur = report.currency or ""
    t = Table(title=f"{report.campaign}: attribution window {report.window_days} days (last human click)")
    for col in (
        "variant", "recipients", "human clicks", "click rate", "orders", "conversion", "revenue",
        "revenue / recipient", "redemptions", "uplift vs holdout (95% CI)",
    ):  # fmt: skip
        t.add_column(col, justify="left" if col == "variant" else "right")
    for v in report.variants.values():
        u = v.uplift
        uplift = (
            "needs sent + holdout"
            if u.uplift is None or u.ci_low is None or u.ci_high is None
            else f"{u.uplift * 100:+.1f} pt [{u.ci_low * 100:+.1f}, {u.ci_high * 100:+.1f}]"
        )
        t.add_row(
            v.variant,
            f"{v.recipients:,}",
            f"{v.human_clicks:,}" + (f" (+{v.flagged_clicks:,} flagged)" if v.flagged_clicks else ""),
            _pct(v.click_rate),
            f"{v.orders:,}",
            _pct(v.conversion),
            format_money(v.revenue, cur),
            "–" if v.revenue_per_recipient is None else format_money(v.revenue_per_recipient, cur),
            f"{v.redemptions:,}",
            uplift,
        )
    out.print(t)
    out.print(
        f"holdout: {report.holdout:,} customers, {report.holdout_ordered:,} ordered within "
        f"{report.window_days} days of their holdout row"
    )


@app.command("report")
def report_cmd(
    ctx: typer.Context,
    campaign: Annotated[str, typer.Argument(help="The campaign's name.")],
    days: Annotated[
        int, typer.Option("--days", help="Attribution window after a click or a send, in days.")
    ] = ATTRIBUTION_DAYS,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, keyed by variant.")] = False,
) -> None:
    """Per variant: recipients, human clicks, click rate, orders, conversion, revenue, uplift vs holdout."""
    if days < 1:
        raise typer.BadParameter("the attribution window must be at least one day", param_hint="--days")
    store = open_store(ctx)
    try:
        report = campaign_report(store, campaign, days=days, currency=settings(ctx).currency)
    finally:
        store.close()
    if not report.variants and not report.holdout:
        raise NotFoundError(
            f"campaign {campaign!r} has no deliveries yet: run `retain send {campaign}` first"
        )
    if as_json:
        print_json(report.to_json())
    else:
        print_report(report)
