"""Segment rules compiled to SQLAlchemy Core over customers / orders / order_lines / products.

The architecture puts segment compilation here (beside the definitions) rather than in
``campaigns.store``; it still hands out only plain records (``CustomerRecord``) and never a
Session. Every statement is portable between SQLite and PostgreSQL; the one dialect-specific
piece, a difference of two timestamps in days, is the :class:`days_between` construct.

Shop-wide quantities (RFM cut points, the top-spender cut, the shop's median gap) are measured
once per evaluation with small aggregate queries and then used as constants, so that the paged
query only aggregates the orders of the customers in its page: total work stays linear in the
number of orders however many pages there are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

from sqlalchemy import (
    DateTime,
    Float,
    Select,
    case,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.functions import FunctionElement

from campaigns.models import Customer, CustomerPrediction, CustomerTag, Order, OrderLine, Product

C, O, L, P = Customer.__table__, Order.__table__, OrderLine.__table__, Product.__table__  # noqa: E741
T = CustomerTag.__table__
CP = CustomerPrediction.__table__

#: consecutive orders closer than this are one shopping trip; their gap is not a "usual gap"
MIN_GAP_DAYS = 1.0


class days_between(FunctionElement[float]):  # noqa: N801 - reads like the SQL function it renders
    """``days_between(later, earlier)``: fractional days from ``earlier`` to ``later``."""

    type = Float()
    inherit_cache = True
    name = "days_between"


@compiles(days_between, "sqlite")
def _days_sqlite(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return f"(julianday({compiler.process(later, **kw)}) - julianday({compiler.process(earlier, **kw)}))"


@compiles(days_between)
def _days_default(element: days_between, compiler: Any, **kw: Any) -> str:
    later, earlier = list(element.clauses)
    return f"(EXTRACT(EPOCH FROM ({compiler.process(later, **kw)} - {compiler.process(earlier, **kw)})) / 86400.0)"


def _now(now: datetime) -> ColumnElement[Any]:
    return literal(now, DateTime())


# --------------------------------------------------------------------------- per-customer aggregates


def _id_range(col: Any, lo: int | None, hi: int | None) -> list[ColumnElement[bool]]:
    conds = []
    if lo is not None:
        conds.append(col > lo)
    if hi is not None:
        conds.append(col <= hi)
    return conds


def customer_stats(now: datetime, lo: int | None = None, hi: int | None = None) -> Select[Any]:
    """Per customer with orders up to ``now``: n (orders), spend, first_at, last_at."""
    return (
        select(
            O.c.customer_id,
            func.count().label("n"),
            func.sum(O.c.total).label("spend"),
            func.min(O.c.ordered_at).label("first_at"),
            func.max(O.c.ordered_at).label("last_at"),
        )
        .where(O.c.ordered_at <= now, *_id_range(O.c.customer_id, lo, hi))
        .group_by(O.c.customer_id)
    )


def usual_gaps(now: datetime, kind: str, lo: int | None = None, hi: int | None = None) -> Select[Any]:
    """Per customer with at least one gap >= MIN_GAP_DAYS: their median (or mean) gap in days."""
    prev = func.lag(O.c.ordered_at).over(partition_by=O.c.customer_id, order_by=(O.c.ordered_at, O.c.id))
    ordered = (
        select(O.c.customer_id, O.c.ordered_at, prev.label("prev"))
        .where(O.c.ordered_at <= now, *_id_range(O.c.customer_id, lo, hi))
        .subquery("ordered")
    )
    gap = days_between(ordered.c.ordered_at, ordered.c.prev)
    gaps = (
        select(ordered.c.customer_id, gap.label("gap"))
        .where(ordered.c.prev.is_not(None), gap >= MIN_GAP_DAYS)
        .subquery("gaps")
    )
    if kind == "mean":
        return select(gaps.c.customer_id, func.avg(gaps.c.gap).label("gap")).group_by(gaps.c.customer_id)
    ranked = select(
        gaps.c.customer_id,
        gaps.c.gap,
        func.row_number().over(partition_by=gaps.c.customer_id, order_by=gaps.c.gap).label("rn"),
        func.count().over(partition_by=gaps.c.customer_id).label("cnt"),
    ).subquery("ranked")
    middle = or_(ranked.c.rn == (ranked.c.cnt + 1) // 2, ranked.c.rn == (ranked.c.cnt + 2) // 2)
    return (
        select(ranked.c.customer_id, func.avg(ranked.c.gap).label("gap"))
        .where(middle)
        .group_by(ranked.c.customer_id)
    )


# --------------------------------------------------------------------------- shop-wide constants


@dataclass
class Population:
    """Shop-wide values measured once per evaluation; ``None`` cut = nobody reaches it."""

    buyers: int = 0
    #: letter -> {k: smallest value with score >= k} for k in 2..5
    rfm_cuts: dict[str, dict[int, Any]] = field(default_factory=dict)
    top_spend_cut: float | None = None
    shop_gap: dict[str, float | None] = field(default_factory=dict)
    clv_cut: float | None = None


_RFM_ORDER = {"r": "last_at", "f": "n", "m": "spend"}


def measure_population(conn: Connection, rules: dict[str, Any], now: datetime) -> Population:
    """Run the few aggregate queries that the rules need (none for purely per-customer rules)."""
    pop = Population()
    stats = customer_stats(now).subquery("stats")
    if "rfm" in rules or "top_spenders_pct" in rules:
        pop.buyers = int(conn.execute(select(func.count()).select_from(stats)).scalar_one())
    if "rfm" in rules and pop.buyers > 1:
        total = func.count().over()
        cols: list[Any] = []
        ranks = {
            letter: func.rank().over(order_by=getattr(stats.c, col)).label(f"rank_{letter}")
            for letter, col in _RFM_ORDER.items()
        }
        ranked = select(stats, *ranks.values(), total.label("total")).subquery("ranked")
        for letter, col in _RFM_ORDER.items():
            rank = getattr(ranked.c, f"rank_{letter}")
            for k in range(2, 6):
                # score >= k  <=>  floor(5 * percent_rank) >= k-1  <=>  5 (rank-1) >= (k-1) (N-1)
                reached = 5 * (rank - 1) >= (k - 1) * (ranked.c.total - 1)
                cols.append(func.min(case((reached, getattr(ranked.c, col)))))
        row = conn.execute(select(*cols)).one()
        for i, letter in enumerate(_RFM_ORDER):
            pop.rfm_cuts[letter] = {k: row[i * 4 + k - 2] for k in range(2, 6)}
    if "top_spenders_pct" in rules and pop.buyers:
        slots = math.ceil(Fraction(str(rules["top_spenders_pct"])) * pop.buyers / 100)
        pop.top_spend_cut = conn.execute(
            select(stats.c.spend).order_by(stats.c.spend.desc()).limit(1).offset(slots - 1)
        ).scalar()
    if "drifting" in rules:
        kind = rules["drifting"]["gap"]
        pop.shop_gap[kind] = shop_median_gap(conn, now, kind)
    if "clv_top_pct" in rules:
        valued = select(func.count()).select_from(CP).where(CP.c.clv_12m.is_not(None))
        count = int(conn.execute(valued).scalar_one())
        if count:
            slots = math.ceil(Fraction(str(rules["clv_top_pct"])) * count / 100)
            pop.clv_cut = conn.execute(
                select(CP.c.clv_12m)
                .where(CP.c.clv_12m.is_not(None))
                .order_by(CP.c.clv_12m.desc())
                .limit(1)
                .offset(slots - 1)
            ).scalar()
    return pop


def shop_median_gap(conn: Connection, now: datetime, kind: str = "median") -> float | None:
    """The median over repeat customers of their usual gap (days); None when nobody has a gap."""
    gaps = usual_gaps(now, kind).subquery("usual")
    count = int(conn.execute(select(func.count()).select_from(gaps)).scalar_one())
    if not count:
        return None
    middle = conn.execute(
        select(gaps.c.gap).order_by(gaps.c.gap).limit(2 - count % 2).offset((count - 1) // 2)
    ).scalars()
    values = [float(v) for v in middle]
    return sum(values) / len(values)


# --------------------------------------------------------------------------- the segment query


def _score_at_least(letter: str, k: int, stats: Any, pop: Population) -> ColumnElement[bool]:
    if k <= 1:
        return true()
    cut = pop.rfm_cuts.get(letter, {}).get(k)
    if cut is None:
        return false()
    column: ColumnElement[Any] = getattr(stats.c, _RFM_ORDER[letter])
    reached: ColumnElement[bool] = column >= cut
    return reached


def _range_conds(col: Any, bounds: dict[str, float], *, days_before: datetime | None = None) -> list[Any]:
    conds = []
    if days_before is not None:  # a "days since" range becomes a timestamp range (older = more days)
        if "min" in bounds:
            conds.append(col <= days_before - timedelta(days=bounds["min"]))
        if "max" in bounds:
            conds.append(col >= days_before - timedelta(days=bounds["max"]))
        return conds
    if "min" in bounds:
        conds.append(col >= bounds["min"])
    if "max" in bounds:
        conds.append(col <= bounds["max"])
    return conds


def segment_query(
    rules: dict[str, Any],
    pop: Population,
    now: datetime,
    *,
    columns: list[Any] | None = None,
    lo: int | None = None,
    hi: int | None = None,
    dialect: str = "sqlite",
) -> Select[Any]:
    """SELECT the members (customers columns + stats by default), ordered by customer id.

    ``lo < customer id <= hi`` restricts the page (and the aggregation) when given; ``dialect``
    is the store's (``store.dialect``), for planner hints.
    """
    stats = customer_stats(now, lo, hi).subquery("stats")
    source: Any = C.join(stats, stats.c.customer_id == C.c.id)
    conds: list[Any] = _id_range(C.c.id, lo, hi)
    for key in ("orders", "spend"):
        if key in rules:
            conds += _range_conds(stats.c.n if key == "orders" else stats.c.spend, rules[key])
    if "days_since_last_order" in rules:
        conds += _range_conds(stats.c.last_at, rules["days_since_last_order"], days_before=now)
    if "days_since_first_order" in rules:
        conds += _range_conds(stats.c.first_at, rules["days_since_first_order"], days_before=now)
    if "first_time_buyers" in rules:
        conds.append(stats.c.n == 1 if rules["first_time_buyers"] else stats.c.n >= 2)
    for letter, (low, high) in rules.get("rfm", {}).items():
        conds.append(_score_at_least(letter, low, stats, pop))
        if high < 5:
            conds.append(not_(_score_at_least(letter, high + 1, stats, pop)))
    if "top_spenders_pct" in rules:
        cut = pop.top_spend_cut
        conds.append(false() if cut is None else stats.c.spend >= cut)
    if "country" in rules:
        country = func.lower(C.c.country)
        if "in" in rules["country"]:
            conds.append(country.in_([v.lower() for v in rules["country"]["in"]]))
        if "not_in" in rules["country"]:
            conds.append(
                or_(C.c.country.is_(None), country.not_in([v.lower() for v in rules["country"]["not_in"]]))
            )
    if "bought" in rules:
        conds.append(_bought(rules["bought"], now))
    if "tags" in rules:
        for key, tags in rules["tags"].items():
            tagged = select(T.c.customer_id).where(func.lower(T.c.tag).in_([t.lower() for t in tags]))
            conds.append(C.c.id.in_(tagged) if key == "any" else C.c.id.not_in(tagged))
    if "drifting" in rules:
        rule = rules["drifting"]
        usual: Any = usual_gaps(now, rule["gap"], lo, hi)
        if dialect == "postgresql":
            # computed once: with stale statistics the planner would otherwise re-run the window
            # query for every customer in a nested loop (minutes instead of milliseconds)
            usual = usual.cte("usual").prefix_with("MATERIALIZED")
        else:
            usual = usual.subquery("usual")
        source = source.outerjoin(usual, usual.c.customer_id == C.c.id)
        fallback = pop.shop_gap.get(rule["gap"])
        gap = usual.c.gap if fallback is None else func.coalesce(usual.c.gap, fallback)
        conds.append(days_between(_now(now), stats.c.last_at) > rule["factor"] * gap)
    if any(
        key in rules for key in ("p_alive", "expected_orders_90d", "clv_top_pct", "next_order_within_days")
    ):
        source = source.join(CP, CP.c.customer_id == C.c.id)
        for key in ("p_alive", "expected_orders_90d"):
            if key in rules:
                conds += _range_conds(CP.c[key], rules[key])
        if "clv_top_pct" in rules:
            conds.append(false() if pop.clv_cut is None else CP.c.clv_12m >= pop.clv_cut)
        if "next_order_within_days" in rules:
            conds.append(CP.c.next_order_at <= now + timedelta(days=rules["next_order_within_days"]))
    if columns is None:
        columns = [*C.c, stats.c.n, stats.c.spend, stats.c.first_at, stats.c.last_at]
    return select(*columns).select_from(source).where(*conds).order_by(C.c.id)


def _bought(rule: dict[str, Any], now: datetime) -> ColumnElement[bool]:
    o2 = O.alias("bought_orders")
    matches = []
    if "sku" in rule:
        matches.append(P.c.sku.in_(rule["sku"]))
    if "category" in rule:
        matches.append(func.lower(P.c.category).in_([c.lower() for c in rule["category"]]))
    conds = [o2.c.ordered_at <= now, or_(*matches)]
    if "within_days" in rule:
        conds.append(o2.c.ordered_at >= now - timedelta(days=rule["within_days"]))
    lines = L.join(o2, o2.c.id == L.c.order_id).join(P, P.c.id == L.c.product_id)
    # uncorrelated IN: evaluated once (a correlated EXISTS let SQLite scan the product's lines per customer)
    return C.c.id.in_(select(o2.c.customer_id).select_from(lines).where(*conds))
