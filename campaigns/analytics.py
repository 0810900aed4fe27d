"""Retention KPIs computed from the store's aggregates (definitions: docs/analytics.md).

- **customers**: customers with at least one purchase (returns do not count).
- **repeat purchase rate**: share of those customers with two or more orders.
- **average order value**: purchase revenue / number of priced orders (returns not subtracted).
- **currency**: the shop's currency is the one most of its orders are in. Revenue and AOV are given in that
  currency only; a store whose orders use several currencies also gets one line per currency
  (``currencies``), never a sum across them. Orders imported without prices (a basket file) count as
  orders and customers but add no revenue (``orders_without_prices``).
- **retention rate** for period t: of the customers who ordered in period t-1, the share who
  ordered again in period t. Periods are calendar months (or quarters). The *latest complete*
  period is the last one that ends before the newest order in the store, so a partly loaded
  month never shows as a collapse.
- **cohort retention**: customers grouped by the month of their first order; cell k is the share
  of the cohort that ordered in month first+k.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
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
class CurrencyKpi:
    currency: str
    orders: int
    revenue: float
    average_order_value: float | None
    orders_without_prices: int = 0


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
    #: the currency of ``revenue``/``average_order_value``/``monthly`` (None: no orders yet)
    currency: str | None = None
    currencies: list[CurrencyKpi] = field(default_factory=list)  # one per currency, most orders first
    orders_without_prices: int = 0

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


#: the retention series covers at most this many years before the last order
MAX_SERIES_YEARS = 20


def _period_index(p: str) -> int:
    """A period ("2011-03" or "2011-Q1") as a number that sorts correctly past the year 9999."""
    year, _, rest = p.partition("-")
    if rest.startswith("Q"):
        return int(year) * 4 + int(rest[1:]) - 1
    return int(year) * 12 + int(rest) - 1


def _period_end(p: str, period: str) -> datetime:
    nxt = _next_period(p, period)
    if period == "month":
        year, mon = map(int, nxt.split("-"))
    else:
        year_s, q = nxt.split("-Q")
        year, mon = int(year_s), (int(q) - 1) * 3 + 1
    if year > datetime.max.year:  # an order stored in December 9999 (the importers refuse such dates)
        return datetime.max
    return datetime(year, mon, 1)


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
    periods = sorted(active, key=_period_index)
    points: list[RetentionPoint] = []
    p = periods[0]
    per_year = 12 if period == "month" else 4
    if _period_index(periods[-1]) - _period_index(p) > MAX_SERIES_YEARS * per_year:
        # stored dates decades apart (a typo that reached the database): report the recent years only
        start = _period_index(periods[-1]) - MAX_SERIES_YEARS * per_year
        year, step = divmod(start, per_year)
        p = f"{year:04d}-{step + 1:02d}" if period == "month" else f"{year:04d}-Q{step + 1}"
    while _period_index(p) <= _period_index(periods[-1]):
        nxt = _next_period(p, period)
        if _period_index(nxt) > _period_index(periods[-1]):
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
    per_currency = [
        CurrencyKpi(
            t.currency,
            t.orders,
            round(t.revenue, 2),
            round(t.revenue / t.priced_orders, 2) if t.priced_orders else None,
            t.orders - t.priced_orders,
        )
        for t in store.currency_totals()
    ]
    main = per_currency[0] if per_currency else None
    in_main = (
        {m: (rev, priced) for m, _, rev, _, priced in store.monthly_orders(main.currency)} if main else {}
    )
    monthly = []
    for m, n, _, c, _ in store.monthly_orders():
        rev, priced = in_main.get(m, (0.0, 0))
        monthly.append(MonthlyPoint(m, n, c, round(rev, 2), round(rev / priced, 2) if priced else None))
    return KpiReport(
        customers=counts.customers_with_orders,
        customers_total=counts.customers_total,
        products=store.products_bought_count(),
        orders=counts.orders,
        order_lines=counts.order_lines,
        returns=counts.returns,
        revenue=main.revenue if main else 0.0,
        repeat_purchase_rate=round(repeaters / buyers, 4) if buyers else None,
        average_order_value=main.average_order_value if main else None,
        retention_rate=round(latest.rate, 4) if latest and latest.rate is not None else None,
        retention_period=latest.period if latest else None,
        period=period,
        first_order_at=counts.first_order_at,
        last_order_at=counts.last_order_at,
        retention=series,
        cohorts=cohort_table(customer_months, cohort_months),
        monthly=monthly,
        currency=main.currency if main else None,
        currencies=per_currency,
        orders_without_prices=counts.orders - counts.priced_orders,
    )


# ---------------------------------------------------------------------------- campaign impact
#
# Attribution is **last touch**: an order is credited to the campaign of the most recent email that
# customer was *sent* at or before the order, if that email is at most ``days`` old. Uplift compares,
# per campaign, the share of sent deliveries followed by an order within ``days`` against the same
# share for the holdout rows (customers deliberately not mailed), with a 95% Wald interval for the
# difference of two proportions. Each delivery row is one trial.

#: two-sided 95% normal quantile
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Uplift:
    treated: int  # sent deliveries
    treated_converted: int
    control: int  # holdout rows
    control_converted: int
    treated_rate: float | None
    control_rate: float | None
    uplift: float | None  # treated_rate - control_rate
    ci_low: float | None
    ci_high: float | None

    @property
    def significant(self) -> bool:
        """True when the 95% interval excludes zero."""
        return self.ci_low is not None and self.ci_high is not None and (self.ci_low > 0 or self.ci_high < 0)


@dataclass(frozen=True)
class CampaignImpact:
    campaign: str
    sent: int
    holdout: int
    skipped: dict[str, int]  # reason -> rows
    failed: int
    attributed_orders: int
    attributed_revenue: float
    uplift: Uplift


def uplift_interval(treated: int, treated_converted: int, control: int, control_converted: int) -> Uplift:
    """Difference of conversion rates (treated - control) with a 95% Wald interval.

    Rates are None for an empty group; the uplift and interval are None unless both groups are
    non-empty. Example: ``uplift_interval(1000, 120, 1000, 100).uplift == 0.02``.
    """
    if (
        min(treated, control) < 0
        or not 0 <= treated_converted <= treated
        or not 0 <= control_converted <= control
    ):
        raise ValueError("conversions must be between 0 and the group size")
    pt = treated_converted / treated if treated else None
    pc = control_converted / control if control else None
    if pt is None or pc is None:
        return Uplift(treated, treated_converted, control, control_converted, pt, pc, None, None, None)
    diff = pt - pc
    se = math.sqrt(pt * (1 - pt) / treated + pc * (1 - pc) / control)
    return Uplift(
        treated, treated_converted, control, control_converted, pt, pc, diff, diff - Z95 * se, diff + Z95 * se
    )


def attribute_orders(
    touches: list[Any], orders: list[tuple[int, int, datetime, float]], *, days: int = 7
) -> dict[str, tuple[int, float]]:
    """Last-touch attribution: campaign -> (orders, revenue) credited within ``days`` of a sent email.

    ``touches`` have ``campaign, customer_id, status, at`` (only ``status == "sent"`` counts);
    ``orders`` are ``(order id, customer id, ordered_at, total)``.
    """
    window = timedelta(days=days)
    by_customer: dict[int, list[tuple[datetime, str]]] = defaultdict(list)
    for t in touches:
        if t.status == "sent" and t.at is not None:
            by_customer[t.customer_id].append((t.at, t.campaign))
    for seq in by_customer.values():
        seq.sort()
    out: dict[str, tuple[int, float]] = {}
    for _order_id, customer_id, ordered_at, total in orders:
        seq = by_customer.get(customer_id) or []
        if not seq:
            continue
        i = bisect_right(seq, (ordered_at, "\uffff")) - 1
        if i < 0 or ordered_at - seq[i][0] > window:
            continue
        campaign = seq[i][1]
        n, revenue = out.get(campaign, (0, 0.0))
        out[campaign] = (n + 1, revenue + total)
    return {c: (n, round(r, 2)) for c, (n, r) in out.items()}


def _conversions(
    touches: list[Any], orders: list[tuple[int, int, datetime, float]], days: int
) -> dict[tuple[str, str], tuple[int, int]]:
    """(campaign, status) -> (rows, rows followed by an order within ``days``)."""
    window = timedelta(days=days)
    order_times: dict[int, list[datetime]] = defaultdict(list)
    for _order_id, customer_id, ordered_at, _total in orders:
        order_times[customer_id].append(ordered_at)
    for times in order_times.values():
        times.sort()
    out: dict[tuple[str, str], tuple[int, int]] = {}
    for t in touches:
        times = order_times.get(t.customer_id, [])
        i = bisect_left(times, t.at)
        hit = i < len(times) and times[i] - t.at <= window
        n, k = out.get((t.campaign, t.status), (0, 0))
        out[(t.campaign, t.status)] = (n + 1, k + int(hit))
    return out


def campaign_impact(store: Any, *, days: int = 7, currency: str | None = None) -> list[CampaignImpact]:
    """Per campaign with deliveries: sent, skipped by reason, last-touch attribution and holdout uplift.

    Every order counts as a conversion; attributed orders and revenue count only orders in ``currency``
    (the shop's, see :func:`kpi_report`) when given, so revenue is never summed across currencies.
    """
    if days < 1:
        raise ValueError("the attribution window must be at least one day")
    counts = store.delivery_counts_by_campaign()
    touches = store.campaign_touches(("sent", "holdout"))
    since = min(t.at for t in touches) if touches else None
    orders = store.orders_since(since) if since else []
    in_currency = store.orders_since(since, currency=currency) if since and currency else orders
    attributed = attribute_orders(touches, in_currency, days=days)
    conversions = _conversions(touches, orders, days)
    impacts: list[CampaignImpact] = []
    for campaign in sorted(counts):
        rows = counts[campaign]
        skipped: dict[str, int] = {}
        for (status, reason), n in rows.items():
            if status in ("skipped", "deferred"):
                key = reason or status
                skipped[key] = skipped.get(key, 0) + n
        sent_n, sent_k = conversions.get((campaign, "sent"), (0, 0))
        hold_n, hold_k = conversions.get((campaign, "holdout"), (0, 0))
        n_orders, revenue = attributed.get(campaign, (0, 0.0))
        impacts.append(
            CampaignImpact(
                campaign=campaign,
                sent=sum(n for (s, _), n in rows.items() if s == "sent"),
                holdout=sum(n for (s, _), n in rows.items() if s == "holdout"),
                skipped=dict(sorted(skipped.items(), key=lambda kv: -kv[1])),
                failed=sum(n for (s, _), n in rows.items() if s == "failed"),
                attributed_orders=n_orders,
                attributed_revenue=revenue,
                uplift=uplift_interval(sent_n, sent_k, hold_n, hold_k),
            )
        )
    return impacts


def repeat_rate_series(orders: list[tuple[int, int, datetime]]) -> list[tuple[str, float]]:
    """Cumulative repeat purchase rate at the end of each month: of the customers who had ordered by
    then, the share with two or more orders. ``orders`` are (order id, customer id, ordered_at)."""
    per_month: dict[str, list[int]] = defaultdict(list)
    for _order_id, customer_id, ordered_at in orders:
        per_month[f"{ordered_at:%Y-%m}"].append(customer_id)
    seen: dict[int, int] = defaultdict(int)
    repeaters = 0
    series: list[tuple[str, float]] = []
    for month in sorted(per_month):
        for customer_id in per_month[month]:
            seen[customer_id] += 1
            if seen[customer_id] == 2:
                repeaters += 1
        series.append((month, round(repeaters / len(seen), 4)))
    return series
