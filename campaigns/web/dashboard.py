"""The dashboard's figures and charts: retention KPIs for the shop and the impact of each campaign."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from markupsafe import Markup

from campaigns.analytics import CampaignImpact, KpiReport, campaign_impact, kpi_report, repeat_rate_series
from campaigns.money import symbol
from campaigns.report import CampaignReport, campaign_report
from campaigns.web import charts


@dataclass(frozen=True)
class Dashboard:
    report: KpiReport
    impacts: list[CampaignImpact]
    test_sends: dict[str, int]
    days: int
    charts: dict[str, Markup]
    #: per campaign and variant: clicks, click-attributed orders, uplift (campaigns/report.py)
    reports: list[CampaignReport] = field(default_factory=list)


def build_dashboard(store: Any, *, days: int = 7) -> Dashboard:
    """Every figure and chart of ``/dashboard``; ``days`` is the attribution window."""
    report = kpi_report(store)
    orders = []
    if report.first_order_at is not None and report.last_order_at is not None:
        orders = store.orders_between(report.first_order_at, report.last_order_at + timedelta(seconds=1))
    # the last month may be partly loaded: retention for it would read as a collapse
    retention = [(p.period, p.rate) for p in report.retention]
    if report.retention_period is not None:
        retention = [(p, r) for p, r in retention if p <= report.retention_period]
    impacts = campaign_impact(store, days=days, currency=report.currency)
    built = {
        "retention": charts.line_chart(
            "retention",
            retention,
            title="Monthly retention rate: share of last month's buyers who bought again",
        ),
        "repeat": charts.line_chart(
            "repeat",
            repeat_rate_series(orders),
            title="Repeat purchase rate: share of customers with two or more orders",
            color="#3d5a80",
        ),
        "aov": charts.line_chart(
            "aov",
            [(m.month, m.average_order_value) for m in report.monthly],
            title="Average order value per month",
            fmt=lambda v: symbol(report.currency or "") + charts.money(v),
            color="#c07a2c",
            as_bars=True,
        ),
        "cohorts": charts.cohort_heatmap(report.cohorts),
        "uplift": charts.uplift_plot([(i.campaign, i.uplift) for i in impacts]),
    }
    reports = [campaign_report(store, i.campaign, days=days, currency=report.currency) for i in impacts]
    return Dashboard(report, impacts, store.event_counts("test_send"), days, built, reports)
