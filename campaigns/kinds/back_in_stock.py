"""back_in_stock: "it's back" and "now for less", to the customers who bought the product (or its category).

Catalogue re-imports record product events (docs/import.md): ``back_in_stock`` when a product can be
bought again, ``price_drop`` with the old and the new price. This kind tells the customers who bought
such a product before — or, with ``match: category``, any product of its category — about the events
of the last ``within_days`` days::

    kind: back_in_stock
    back_in_stock: {events: [back_in_stock, price_drop], match: product, within_days: 7, count: 4}
    schedule: {cron: "0 9 * * 1"}          # weekly: within_days 7 tells each event once

Only products that may be shown now (active, published, in stock) are listed; a price drop shows the old
price struck through beside the new one. A customer with nothing to hear about is skipped ("no news for
this customer"). Events carry the real time of the import that found them, so the window is measured on
the real clock (not ``as_of``). Run it on a schedule as long as ``within_days``, or customers hear of one
event twice.

This module and its template are the whole kind: the registry finds it by its ``KIND``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition, FrontMatter
from campaigns.kinds.base import (
    AudienceRequest,
    ContextInputs,
    DataNeeds,
    KindBase,
    Member,
    NoContent,
    OptionSpec,
)
from campaigns.kinds.common import money, product_card
from campaigns.store.base import utcnow
from campaigns.store.protocols import AudienceStore
from campaigns.store.records import ProductEventRecord, ProductRecord, PurchaseHistory

EVENTS = ("back_in_stock", "price_drop")
MATCHES = ("product", "category")
#: the longest window a campaign may ask for (the factory fetches this many days of events)
MAX_WINDOW_DAYS = 60
TITLES = {"back_in_stock": "Back in stock", "price_drop": "Now for less"}


@dataclass(frozen=True)
class BackInStockSpec:
    events: tuple[str, ...] = EVENTS
    match: str = "product"
    within_days: int = 7
    count: int = 4


def parse_spec(fm: FrontMatter, key: str) -> BackInStockSpec:
    raw = fm.mapping(key, {"events", "match", "within_days", "count"})
    values: dict[str, Any] = {}
    if "events" in raw:
        events = fm.string_list(key, "events", raw["events"])
        if not events or any(e not in EVENTS for e in events):
            known = ", ".join(EVENTS)
            raise fm.fail(key, f"{key}.events must be a list of {known}, got {raw['events']!r}", "events")
        values["events"] = tuple(dict.fromkeys(events))
    if "match" in raw:
        if raw["match"] not in MATCHES:
            known = ", ".join(MATCHES)
            raise fm.fail(key, f"{key}.match must be one of {known}, got {raw['match']!r}", "match")
        values["match"] = raw["match"]
    for name, low, high in (("within_days", 1, MAX_WINDOW_DAYS), ("count", 1, 12)):
        if name in raw:
            value = fm.number(key, name, raw[name], integer=True, low=low)
            if value > high:
                raise fm.fail(key, f"{key}.{name} must be at most {high}", name)
            values[name] = value
    return BackInStockSpec(**values)


def _spec(definition: CampaignDefinition) -> BackInStockSpec:
    spec = definition.options.get("back_in_stock")
    return spec if isinstance(spec, BackInStockSpec) else BackInStockSpec()


def recent_events(
    events: list[ProductEventRecord] | tuple[ProductEventRecord, ...], spec: BackInStockSpec, now: datetime
) -> dict[int, dict[str, ProductEventRecord]]:
    """Per product, the latest event of each wanted kind within the window (``now`` naive UTC)."""
    since = now - timedelta(days=spec.within_days)
    out: dict[int, dict[str, ProductEventRecord]] = {}
    for event in events:
        if event.kind in spec.events and event.created_at >= since:
            out.setdefault(event.product_id, {})[event.kind] = event  # oldest first: the latest wins
    return out


def news_for(
    history: PurchaseHistory | None,
    news: Mapping[int, Mapping[str, ProductEventRecord]],
    products: Mapping[int, ProductRecord],
    match: str,
) -> list[int]:
    """The products with news that this customer bought (or bought the category of), that can be shown."""
    if history is None:
        return []
    out = []
    for product_id in news:
        product = products.get(product_id)
        if product is None or not product.available:
            continue
        if product_id in history.product_ids or (
            match == "category" and product.category is not None and product.category in history.categories
        ):
            out.append(product_id)
    return out


def _buyers(store: AudienceStore, spec: BackInStockSpec) -> list[int]:
    news = recent_events(store.product_events(kinds=list(spec.events), since=_since(spec)), spec, utcnow())
    if not news:
        return []
    if spec.match == "product":
        return store.buyers_of(list(news))
    categories = {p.category for p in store.products_by_ids(list(news)).values() if p.category}
    return store.buyers_of(list(news), sorted(categories))


def _since(spec: BackInStockSpec) -> datetime:
    return utcnow() - timedelta(days=spec.within_days)


class BackInStockKind(KindBase):
    name = "back_in_stock"
    description = "back in stock / price drop, to the customers who bought the product or its category"
    needs = DataNeeds(catalogue_events_days=MAX_WINDOW_DAYS)
    options = {"back_in_stock": OptionSpec(parse_spec, default=BackInStockSpec)}

    def audience(self, request: AudienceRequest) -> Iterator[list[Member]]:
        """Everyone who bought a product with news (or its category), in batches."""
        ids = _buyers(request.store, _spec(request.definition))
        size = request.settings.batch_size
        for start in range(0, len(ids), size):
            customers = request.store.customers_by_ids(ids[start : start + size])
            yield [Member(customers[c]) for c in ids[start : start + size] if c in customers]

    def preview_members(self, request: AudienceRequest, limit: int) -> list[Member]:
        ids = _buyers(request.store, _spec(request.definition))
        picked = sorted(random.sample(ids, min(limit, len(ids))))
        customers = request.store.customers_by_ids(picked)
        return [Member(customers[c]) for c in picked if c in customers]

    def context(
        self, definition: CampaignDefinition, settings: Settings, base: dict[str, Any], inputs: ContextInputs
    ) -> dict[str, Any]:
        """Adds ``blocks``: "Back in stock" and "Now for less" (each card of a price drop has ``was_price``,
        the price before the drop). NoContent when none of the customer's products has news."""
        spec = _spec(definition)
        clock = utcnow() if inputs.issued_at is None else _naive_utc(inputs.issued_at)
        news = recent_events(list(inputs.events), spec, clock)
        mine = news_for(inputs.bought, news, inputs.products, spec.match)
        blocks = []
        for kind in spec.events:
            cards = []
            for product_id in mine:
                event = news[product_id].get(kind)
                if event is None:
                    continue
                product = inputs.products[product_id]
                card = product_card(product, settings, definition.name)
                if kind == "price_drop" and event.old_value is not None and product.price is not None:
                    if event.old_value > product.price:
                        card["was_price"] = money(event.old_value, product.currency or settings.currency)
                        card["on_sale"] = True
                cards.append(card)
            if cards:
                blocks.append({"name": kind, "title": TITLES[kind], "products": cards[: spec.count]})
        if not blocks:
            raise NoContent("no news for this customer")
        return dict(base, blocks=blocks, match=spec.match)


def _naive_utc(stamp: float) -> datetime:
    return datetime.fromtimestamp(stamp, UTC).replace(tzinfo=None)


KIND = BackInStockKind()
