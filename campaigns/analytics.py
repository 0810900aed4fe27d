"""Retention KPIs computed from the store's aggregates (definitions: docs/analytics.md).

- **customers**: customers with at least one purchase (returns do not count).
- **repeat purchase rate**: share of those customers with two or more orders.
- **average order value**: purchase revenue / number of orders (returns not subtracted).
- **retention rate** for period t: of the customers who ordered in period t-1, the share who
  ordered again in period t. Periods are calendar months (or quarters). The *latest complete*
  period is the last one that ends before the newest order in the store, so a partly loaded
  month never shows as a collapse.
- **cohort retention**: customers grouped by the month of their first order; cell k is the share
  of the cohort that ordered in month first+k.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

PERIODS = ("month", "quarter")


@dataclass(frozen=True)
class RetentionPoint:
    period: str  # "2011-11" or "2011-Q4"
    previous_active: int
    retained: int
    rate: float | None


@dataclass(frozen=True)
class Cohort:
    cohort: str  # first-order month "2010-12"
    size: int
    retention: list[float]  # share active in month +0, +1, ... (month +0 is always 1.0)


@dataclass(frozen=True)
class MonthlyPoint:
    month: str
    orders: int
    customers: int
    revenue: float
    average_order_value: float | None


@dataclass(frozen=True)
class KpiReport:
    customers: int
    customers_total: int
    products: int
    orders: int
    order_lines: int
    returns: int
    revenue: float
    repeat_purchase_rate: float | None
    average_order_value: float | None
    retention_rate: float | None
    retention_period: str | None
    period: str
    first_order_at: datetime | None
    last_order_at: datetime | None
    retention: list[RetentionPoint] = field(default_factory=list)
    cohorts: list[Cohort] = field(default_factory=list)
    monthly: list[MonthlyPoint] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("first_order_at", "last_order_at"):
            value = data[key]
            data[key] = value.isoformat(sep=" ") if value else None
        return data


def _period_of(month: str, period: str) -> str:
    if period == "month":
        return month
    year, mon = month.split("-")
    return f"{year}-Q{(int(mon) - 1) // 3 + 1}"


def _next_period(p: str, period: str) -> str:
    if period == "month":
        year, mon = map(int, p.split("-"))
        year, mon = (year + 1, 1) if mon == 12 else (year, mon + 1)
        return f"{year:04d}-{mon:02d}"
    year_s, q = p.split("-Q")
    year, quarter = int(year_s), int(q)
    year, quarter = (year + 1, 1) if quarter == 4 else (year, quarter + 1)
    return f"{year:04d}-Q{quarter}"


def _period_end(p: str, period: str) -> datetime:
    nxt = _next_period(p, period)
    if period == "month":
        year, mon = map(int, nxt.split("-"))
        return datetime(year, mon, 1)
    year_s, q = nxt.split("-Q")
    return datetime(int(year_s), (int(q) - 1) * 3 + 1, 1)


def _months_between(a: str, b: str) -> int:
    ya, ma = map(int, a.split("-"))
    yb, mb = map(int, b.split("-"))
    return (yb - ya) * 12 + (mb - ma)


def retention_series(customer_months: list[tuple[int, str]], period: str = "month") -> list[RetentionPoint]:
    """Retention per period from distinct (customer, 'YYYY-MM') pairs; the first period has no predecessor."""
    if period not in PERIODS:
        raise ValueError(f"period must be one of {PERIODS}, got {period!r}")
    active: dict[str, set[int]] = defaultdict(set)
    for customer, month in customer_months:
        active[_period_of(month, period)].add(customer)
    if not active:
        return []
    periods = sorted(active)
    points: list[RetentionPoint] = []
    p = periods[0]
    while p <= periods[-1]:
        nxt = _next_period(p, period)
        if nxt > periods[-1]:
            break
        prev, cur = active.get(p, set()), active.get(nxt, set())
        retained = len(prev & cur)
        points.append(RetentionPoint(nxt, len(prev), retained, retained / len(prev) if prev else None))
        p = nxt
    return points


def cohort_table(customer_months: list[tuple[int, str]], max_months: int = 12) -> list[Cohort]:
    """Monthly cohorts by first-order month; ``retention[k]`` = share ordering in month first+k."""
    first: dict[int, str] = {}
    months_of: dict[int, set[str]] = defaultdict(set)
    for customer, month in customer_months:
        months_of[customer].add(month)
        if customer not in first or month < first[customer]:
            first[customer] = month
    if not first:
        return []
    last_month = max(m for ms in months_of.values() for m in ms)
    members: dict[str, list[int]] = defaultdict(list)
    for customer, month in first.items():
        members[month].append(customer)
    cohorts: list[Cohort] = []
    for cohort in sorted(members):
        span = min(max_months, _months_between(cohort, last_month))
        counts = [0] * (span + 1)
        for customer in members[cohort]:
            for month in months_of[customer]:
                k = _months_between(cohort, month)
                if 0 <= k <= span:
                    counts[k] += 1
        size = len(members[cohort])
        cohorts.append(Cohort(cohort, size, [round(c / size, 4) for c in counts]))
    return cohorts


def kpi_report(store: Any, *, period: str = "month", cohort_months: int = 12) -> KpiReport:
    """Every KPI of ``retain stats`` from a handful of aggregate queries (no row-by-row reads)."""
    counts = store.catalog_counts()
    per_customer = store.orders_per_customer()
    buyers = sum(per_customer.values())
    repeaters = sum(k for n, k in per_customer.items() if n >= 2)
    customer_months = store.customer_months()
    series = retention_series(customer_months, period)
    latest: RetentionPoint | None = None
    if counts.last_order_at is not None:
        complete = [p for p in series if _period_end(p.period, period) <= counts.last_order_at]
        latest = complete[-1] if complete else None
    monthly = [
        MonthlyPoint(m, n, c, round(rev, 2), round(rev / n, 2) if n else None)
        for m, n, rev, c in store.monthly_orders()
    ]
    return KpiReport(
        customers=counts.customers_with_orders,
        customers_total=counts.customers_total,
        products=store.products_bought_count(),
        orders=counts.orders,
        order_lines=counts.order_lines,
        returns=counts.returns,
        revenue=round(counts.revenue, 2),
        repeat_purchase_rate=round(repeaters / buyers, 4) if buyers else None,
        average_order_value=round(counts.revenue / counts.orders, 2) if counts.orders else None,
        retention_rate=round(latest.rate, 4) if latest and latest.rate is not None else None,
        retention_period=latest.period if latest else None,
        period=period,
        first_order_at=counts.first_order_at,
        last_order_at=counts.last_order_at,
        retention=series,
        cohorts=cohort_table(customer_months, cohort_months),
        monthly=monthly,
    )
