"""replenishment: "time to restock?" when a customer's usual interval for something they re-buy comes due.

Each product's repurchase interval is learned from customers' repeat purchases of it, shrunk toward its
category's for products seen re-bought only a few times; a customer who re-bought it themselves gets
their own rhythm, shrunk toward the product's (campaigns/lifecycle/replenish.py, docs/predictions.md).
A customer who bought a product on at least ``min_purchases`` different days is due from ``lead_days``
before their interval has passed since the last purchase to ``window_days`` after::

    kind: replenishment
    replenishment: {lead_days: 3, window_days: 7, min_purchases: 2, count: 4}
    schedule: {cron: "0 10 * * *", timezone: recipient}

Once per cycle: the member's order is the last order with the due product, and the ledger's unique
(campaign, order) sends one reminder per such order; buying the product again starts a new cycle. The
email shows the due product(s) from that order and items often bought with it.

This module and its template are the whole kind: the registry finds it by its ``KIND``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
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
from campaigns.kinds.common import block_context, long_date, product_card
from campaigns.kinds.post_purchase import members_for_orders
from recommender.blocks import SIMILAR, Block

#: the customer's latest orders the context reads to tell which products they re-buy
HISTORY_ORDERS = 30


@dataclass(frozen=True)
class ReplenishmentSpec:
    lead_days: int = 3
    window_days: int = 7
    min_purchases: int = 2
    count: int = 4


def parse_spec(fm: FrontMatter, key: str) -> ReplenishmentSpec:
    raw = fm.mapping(key, {"lead_days", "window_days", "min_purchases", "count"})
    values: dict[str, int] = {}
    for name, low, high in (
        ("lead_days", 0, 60),
        ("window_days", 1, 90),
        ("min_purchases", 2, 20),
        ("count", 1, 12),
    ):
        if name in raw:
            value = fm.number(key, name, raw[name], integer=True, low=low)
            if value > high:
                raise fm.fail(key, f"{key}.{name} must be at most {high}", name)
            values[name] = value
    return ReplenishmentSpec(**values)


def _spec(definition: CampaignDefinition) -> ReplenishmentSpec:
    spec = definition.options.get("replenishment")
    return spec if isinstance(spec, ReplenishmentSpec) else ReplenishmentSpec()


def due_pairs(request: AudienceRequest, spec: ReplenishmentSpec) -> list[tuple[int, int]]:
    """``(customer, order)`` per due customer (their soonest-due product's last order), not yet reminded."""
    from campaigns.lifecycle.replenish import due_now

    lines = request.store.purchase_columns(until=request.now + timedelta(seconds=1))
    categories = {p.id: p.category for p in request.store.all_products()}
    due = due_now(
        lines,
        categories,
        request.now,
        lead_days=spec.lead_days,
        window_days=spec.window_days,
        min_purchases=spec.min_purchases,
    )
    done = request.store.followed_up_orders(request.definition.name, sorted({o for _, _, o, _ in due}))
    chosen: dict[int, int] = {}
    for customer, _, order, _ in due:
        if order not in done and customer not in chosen:
            chosen[customer] = order
    return sorted(chosen.items())


def rebought(inputs: ContextInputs, min_purchases: int) -> list[int]:
    """Products of the member's order that the customer bought on at least ``min_purchases`` days."""
    if inputs.order is None:
        return []
    days: dict[int, set[Any]] = {}
    for order in (*inputs.orders, inputs.order):
        for line in order.lines:
            days.setdefault(line.product.id, set()).add(order.ordered_at.date())
    seen: list[int] = []
    for line in inputs.order.lines:
        pid = line.product.id
        if len(days.get(pid, ())) >= min_purchases and pid not in seen:
            seen.append(pid)
    return seen


class ReplenishmentKind(KindBase):
    name = "replenishment"
    description = "time to restock: when a customer's usual interval for a product they re-buy comes due"
    needs = DataNeeds(similar_to_order=True, orders=HISTORY_ORDERS)
    options = {"replenishment": OptionSpec(parse_spec, default=ReplenishmentSpec)}

    def audience(self, request: AudienceRequest) -> Iterator[list[Member]]:
        pairs = due_pairs(request, _spec(request.definition))
        return members_for_orders(request.store, pairs, request.settings.batch_size)

    def preview_members(self, request: AudienceRequest, limit: int) -> list[Member]:
        pairs = due_pairs(request, _spec(request.definition))
        picked = sorted(random.sample(pairs, min(limit, len(pairs))))
        return [m for batch in members_for_orders(request.store, picked, limit) for m in batch]

    def context(
        self, definition: CampaignDefinition, settings: Settings, base: dict[str, Any], inputs: ContextInputs
    ) -> dict[str, Any]:
        """Adds ``restock`` (cards of the due products from the member's order), ``order_date`` (when they
        last bought them) and ``blocks`` (items often bought with that order). NoContent when none of the
        order's products is one the customer re-buys, or none can be shown."""
        spec = _spec(definition)
        order = inputs.order
        if order is None:
            raise NoContent("no order to restock from")
        due = set(rebought(inputs, spec.min_purchases))
        restock = [
            product_card(line.product, settings, definition.name)
            for line in order.lines
            if line.product.id in due and line.product.available
        ][: spec.count]
        if not restock:
            raise NoContent("nothing to restock")
        similar = inputs.similar
        if similar is not None:
            similar = Block(
                similar.name, tuple(i for i in similar.items if i.product_id not in due), similar.fallback
            )
        block = block_context(similar, SIMILAR, inputs.products, settings, definition.name, spec.count)
        return dict(
            base,
            restock=restock,
            order_date=long_date(order.ordered_at),
            blocks=[block] if block["products"] else [],
        )


KIND = ReplenishmentKind()
