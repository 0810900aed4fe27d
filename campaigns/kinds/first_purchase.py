"""first_purchase: a few days after a customer's FIRST order, products that go with what they bought.

An upsell for new customers, the moment they are most likely to buy again. The audience is every
customer whose first order was placed ``days_after_order`` days ago (within ``window_days``) and who has
not ordered again since; one email per customer (the ledger's unique (campaign, order) holds it to one
per first order). The products are the items most often bought with that order (``similar_items``),
with an optional offer::

    kind: first_purchase
    first_purchase: {days_after_order: 3, window_days: 3, count: 4}
    promotion: {code: WELCOME10, discount: "10%"}     # optional

This module and its template are the whole kind: the registry finds it by its ``KIND``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
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
from campaigns.kinds.common import block_context, long_date, order_context
from campaigns.kinds.post_purchase import due_orders, members_for_orders
from campaigns.kinds.promotion import PROMOTION_OPTION, promotion_context
from recommender.blocks import SIMILAR, Block


@dataclass(frozen=True)
class FirstPurchaseSpec:
    days_after_order: int = 3
    window_days: int = 3
    count: int = 4


def parse_spec(fm: FrontMatter, key: str) -> FirstPurchaseSpec:
    raw = fm.mapping(key, {"days_after_order", "window_days", "count"})
    values = {
        k: fm.number(key, k, v, integer=True, low=0 if k == "days_after_order" else 1) for k, v in raw.items()
    }
    if values.get("count", 1) > 12:
        raise fm.fail(key, f"{key}.count must be at most 12 (an email, not a catalogue)", "count")
    return FirstPurchaseSpec(**values)


def _spec(definition: CampaignDefinition) -> FirstPurchaseSpec:
    spec = definition.options.get("first_purchase")
    return spec if isinstance(spec, FirstPurchaseSpec) else FirstPurchaseSpec()


class FirstPurchaseKind(KindBase):
    name = "first_purchase"
    description = "a few days after a first order: products that go with it, for one-time buyers"
    needs = DataNeeds(similar_to_order=True)
    options = {
        "first_purchase": OptionSpec(parse_spec, default=FirstPurchaseSpec),
        "promotion": replace(PROMOTION_OPTION, required=False),
    }
    ticks_without_schedule = True

    def audience(self, request: AudienceRequest) -> Iterator[list[Member]]:
        spec = _spec(request.definition)
        end = request.now - timedelta(days=spec.days_after_order)
        start = end - timedelta(days=spec.window_days)
        firsts = [(o, c, at) for o, c, at, n in request.store.first_orders_between(start, end) if n == 1]
        pairs = due_orders(request.store, request.definition.name, firsts)
        return members_for_orders(request.store, pairs, request.settings.batch_size)

    def preview_members(self, request: AudienceRequest, limit: int) -> list[Member]:
        """One-time buyers whose first order is at most 30 days old."""
        recent = request.store.first_orders_between(request.now - timedelta(days=30), request.now)
        pairs = [(c, o) for o, c, _, n in recent if n == 1]
        picked = sorted(random.sample(pairs, min(limit, len(pairs))))
        return [m for batch in members_for_orders(request.store, picked, limit) for m in batch]

    def context(
        self, definition: CampaignDefinition, settings: Settings, base: dict[str, Any], inputs: ContextInputs
    ) -> dict[str, Any]:
        """Adds ``order`` (the first order), ``days_since`` (its date in words), ``promotion`` (None without
        one) and ``blocks`` (what goes with it). NoContent when no product can be suggested."""
        order = inputs.order
        if order is None:
            raise NoContent("no first order")
        spec = _spec(definition)
        bought = {line.product.id for line in order.lines}
        similar = inputs.similar
        if similar is not None:
            similar = Block(
                similar.name, tuple(i for i in similar.items if i.product_id not in bought), similar.fallback
            )
        block = block_context(similar, SIMILAR, inputs.products, settings, definition.name, spec.count)
        if not block["products"]:
            raise NoContent("no products to suggest")
        promo = definition.promotion
        return dict(
            base,
            order=order_context(order, settings, definition.name),
            order_date=long_date(order.ordered_at),
            promotion=promotion_context(promo, settings, definition.name) if promo else None,
            blocks=[block],
        )


KIND = FirstPurchaseKind()
