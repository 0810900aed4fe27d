"""One campaign's results per variant: clicks, click-attributed orders and revenue, uplift against the holdout.

Two attributions, both within ``window_days`` (default :data:`ATTRIBUTION_DAYS` = 5):

* **after a click** (last touch): an order is credited to the campaign and variant of the customer's most
  recent *human* click (campaigns/clicks.py) before it, in any campaign, if that click is at most
  ``window_days`` old. ``orders``, ``revenue``, ``conversion`` (recipients with a credited order / recipients)
  and ``revenue_per_recipient`` come from this.
* **after a send** (the causal comparison): a recipient converts when they order within ``window_days`` after
  the email was handed over; a holdout customer when they order within ``window_days`` after their holdout
  row. ``uplift`` is the difference of these rates (variant minus the campaign's whole holdout) with its
  95% interval (:func:`campaigns.analytics.uplift_interval`).

Only orders in the shop's currency count as revenue (never summed across currencies); test sends are left
out. Rows without a variant (a campaign without ``variants:``) report under :data:`DEFAULT_VARIANT`::

    report = campaign_report(store, "weekly-picks", currency="GBP")
    report.variants["a"].human_clicks, report.to_json()
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from campaigns.analytics import Uplift, uplift_interval

#: default attribution window (days) for clicks and sends
ATTRIBUTION_DAYS = 5
#: the variant name of rows sent without variants
DEFAULT_VARIANT = "default"


@dataclass(frozen=True)
class VariantResult:
    """One variant's figures (see the module docstring for each definition)."""

    variant: str
    recipients: int
    human_clicks: int
    flagged_clicks: int  # stored clicks judged not human (scanners, prefetch, bursts)
    clickers: int  # recipients with at least one human click
    click_rate: float | None  # clickers / recipients
    orders: int  # credited to this variant by the last human click
    revenue: float
    converted: int  # recipients with a credited order
    conversion: float | None
    revenue_per_recipient: float | None
    ordered_after_send: int  # recipients who ordered within the window after the send
    uplift: Uplift  # after-send conversion against the campaign's holdout
    redemptions: int = 0  # orders that used this variant's unique coupon codes (campaigns/coupons.py)
    revenue_sumsq: float = 0.0  # sum over recipients of (credited revenue)^2: the winner rule's spread

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["uplift"] = {
            "uplift": self.uplift.uplift,
            "ci_low": self.uplift.ci_low,
            "ci_high": self.uplift.ci_high,
            "treated_rate": self.uplift.treated_rate,
            "control_rate": self.uplift.control_rate,
            "significant": self.uplift.significant,
        }
        return out


@dataclass(frozen=True)
class CampaignReport:
    campaign: str
    window_days: int
    currency: str | None
    holdout: int
    holdout_ordered: int
    variants: dict[str, VariantResult] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Keyed by variant: ``{name: {recipients, human_clicks, orders, revenue, ..., uplift, campaign,
        window_days, currency, holdout, holdout_ordered}}`` (the campaign's figures repeated in each)."""
        shared = {
            "campaign": self.campaign,
            "window_days": self.window_days,
            "currency": self.currency,
            "holdout": self.holdout,
            "holdout_ordered": self.holdout_ordered,
        }
        return {name: {**v.to_json(), **shared} for name, v in self.variants.items()}


def last_touch(
    clicks: list[tuple[int, str, str | None, datetime]],
    orders: list[tuple[int, int, datetime, float]],
    *,
    days: int,
) -> dict[int, tuple[str, str | None]]:
    """order id -> (campaign, variant) of the customer's latest click at or before it, within ``days``.

    ``clicks`` are (customer, campaign, variant, when), human clicks only; ``orders`` (id, customer, when, total).
    """
    window = timedelta(days=days)
    by_customer: dict[int, list[tuple[datetime, int]]] = defaultdict(list)
    for i, (customer, _campaign, _variant, at) in enumerate(clicks):
        by_customer[customer].append((at, i))
    for times in by_customer.values():
        times.sort()
    out: dict[int, tuple[str, str | None]] = {}
    for order_id, customer, ordered_at, _total in orders:
        seq = by_customer.get(customer)
        if not seq:
            continue
        j = bisect_right(seq, (ordered_at, len(clicks))) - 1
        if j < 0 or ordered_at - seq[j][0] > window:
            continue
        _, campaign, variant, _ = clicks[seq[j][1]]
        out[order_id] = (campaign, variant)
    return out


def _ordered_within(times: list[datetime], start: datetime, window: timedelta) -> bool:
    i = bisect_left(times, start)
    return i < len(times) and times[i] - start <= window


def campaign_report(
    store: Any,
    campaign: str,
    *,
    days: int = ATTRIBUTION_DAYS,
    currency: str | None = None,
    run_key: str | None = None,
) -> CampaignReport:
    """The campaign's figures per variant (ValueError for a window under one day); one run's with ``run_key``."""
    if days < 1:
        raise ValueError("the attribution window must be at least one day")
    window = timedelta(days=days)
    rows = store.campaign_recipients(campaign)
    if run_key is not None:
        rows = [r for r in rows if r.run_key == run_key]
    sent = [r for r in rows if r.status == "sent"]
    holdout = [r for r in rows if r.status == "holdout"]
    since = min((r.at for r in rows), default=None)
    orders = store.orders_since(since) if since is not None else []
    money = store.orders_since(since, currency=currency) if since is not None and currency else orders
    order_times: dict[int, list[datetime]] = defaultdict(list)
    for _id, customer, at, _total in orders:
        order_times[customer].append(at)
    clicks = store.clicks(campaign)
    if run_key is not None:
        clicks = [c for c in clicks if c.run_key == run_key]
    human = [
        (customer, camp, variant, at)
        for customer, camp, at, variant in _human_clicks_with_variant(store, since)
    ]
    credited = last_touch(human, money, days=days)
    redeemed = _redemptions(store, campaign)

    variant_of: dict[int, str] = {}
    names: list[str] = []
    for r in sent:
        name = r.variant or DEFAULT_VARIANT
        variant_of.setdefault(r.customer_id, name)
        if name not in names:
            names.append(name)
    hold_n = len(holdout)
    hold_k = sum(_ordered_within(order_times.get(r.customer_id, []), r.at, window) for r in holdout)
    results: dict[str, VariantResult] = {}
    for name in sorted(names):
        mine = [r for r in sent if (r.variant or DEFAULT_VARIANT) == name]
        ids = {r.customer_id for r in mine}
        my_clicks = [c for c in clicks if (c.variant or DEFAULT_VARIANT) == name and c.customer_id in ids]
        human_clicks = [c for c in my_clicks if c.human]
        clickers = {c.customer_id for c in human_clicks}
        won = [
            (oid, cust, total)
            for oid, cust, _at, total in money
            if credited.get(oid) == (campaign, None if name == DEFAULT_VARIANT else name) and cust in ids
        ]
        converted = {cust for _oid, cust, _t in won}
        revenue = round(sum(t for _o, _c, t in won), 2)
        per_customer: dict[int, float] = defaultdict(float)
        for _o, cust, total in won:
            per_customer[cust] += total
        after = sum(_ordered_within(order_times.get(r.customer_id, []), r.at, window) for r in mine)
        n = len(mine)
        results[name] = VariantResult(
            variant=name,
            recipients=n,
            human_clicks=len(human_clicks),
            flagged_clicks=len(my_clicks) - len(human_clicks),
            clickers=len(clickers),
            click_rate=len(clickers) / n if n else None,
            orders=len(won),
            revenue=revenue,
            converted=len(converted),
            conversion=len(converted) / n if n else None,
            revenue_per_recipient=round(revenue / n, 4) if n else None,
            ordered_after_send=after,
            uplift=uplift_interval(n, after, hold_n, hold_k),
            redemptions=redeemed.get(name, 0),
            revenue_sumsq=sum(v * v for v in per_customer.values()),
        )
    return CampaignReport(campaign, days, currency, hold_n, hold_k, results)


def _human_clicks_with_variant(
    store: Any, since: datetime | None
) -> list[tuple[int, str, datetime, str | None]]:
    """Every human click since ``since`` in any campaign (last touch looks across campaigns)."""
    if since is None:
        return []
    return list(store.human_clicks_since(since))


def _redemptions(store: Any, campaign: str) -> dict[str, int]:
    """Variant -> orders that used one of the campaign's unique codes (when the store knows coupons)."""
    counter = getattr(store, "coupon_redemptions", None)
    return dict(counter(campaign)) if counter is not None else {}


__all__ = [
    "ATTRIBUTION_DAYS",
    "DEFAULT_VARIANT",
    "CampaignReport",
    "VariantResult",
    "campaign_report",
    "last_touch",
]
