"""post_purchase: thank-you N days after an order, what they bought, 1-5 star feedback links,
and complementary products (``similar_items`` of the order).

The audience is not a segment but the orders whose follow-up is due: placed ``days_after_order`` days
ago (within ``window_days``), not followed up by this campaign yet (the ledger's unique (campaign,
order) guarantees one follow-up per order), the newest such order per customer.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition, FollowUpSpec, parse_follow_up
from campaigns.kinds.base import (
    AudienceRequest,
    ContextInputs,
    DataNeeds,
    KindBase,
    Member,
    NoContent,
    OptionSpec,
)
from campaigns.kinds.common import block_context, order_context, secret_key
from campaigns.store.protocols import AudienceStore
from campaigns.tokens import feedback_url
from recommender.blocks import SIMILAR, Block

STAR_LABELS = {1: "Poor", 2: "Fair", 3: "Good", 4: "Very good", 5: "Excellent"}


def members_for_orders(
    store: AudienceStore, pairs: Sequence[tuple[int, int]], batch_size: int
) -> Iterator[list[Member]]:
    """``(customer id, order id)`` pairs as batches of members (two queries per batch)."""
    for start in range(0, len(pairs), batch_size):
        part = pairs[start : start + batch_size]
        customers = store.customers_by_ids([c for c, _ in part])
        orders = store.orders_by_ids([o for _, o in part])
        yield [Member(customers[c], orders[o]) for c, o in part if c in customers and o in orders]


def due_orders(
    store: AudienceStore, campaign: str, due: Sequence[tuple[int, int, Any]]
) -> list[tuple[int, int]]:
    """The newest not-yet-followed-up order per customer among ``due`` (order, customer, time) rows."""
    done = store.followed_up_orders(campaign, [o for o, _, _ in due])
    latest: dict[int, int] = {}
    for order_id, customer_id, _ in due:
        if order_id not in done:
            latest[customer_id] = order_id
    return sorted(latest.items())


class PostPurchaseKind(KindBase):
    name = "post_purchase"
    description = "thank-you after an order: what they bought, star-rating feedback, goes-well-with items"
    needs = DataNeeds(similar_to_order=True, orders=5)
    options = {"follow_up": OptionSpec(parse_follow_up, default=FollowUpSpec)}
    transactional = True
    ticks_without_schedule = True

    def audience(self, request: AudienceRequest) -> Iterator[list[Member]]:
        spec = request.definition.follow_up or FollowUpSpec()
        end = request.now - timedelta(days=spec.days_after_order)
        start = end - timedelta(days=spec.window_days)
        due = request.store.orders_between(start, end)
        pairs = due_orders(request.store, request.definition.name, due)
        return members_for_orders(request.store, pairs, request.settings.batch_size)

    def preview_members(self, request: AudienceRequest, limit: int) -> list[Member]:
        """Recent buyers (last 30 days, or the follow-up window if longer) with their newest order."""
        spec = request.definition.follow_up or FollowUpSpec()
        days = max(spec.days_after_order + spec.window_days, 30)
        recent = request.store.orders_between(request.now - timedelta(days=days), request.now)
        picked = random.sample(recent, min(limit, len(recent)))
        latest = {customer_id: order_id for order_id, customer_id, _ in sorted(picked, key=lambda r: r[2])}
        return [
            m for batch in members_for_orders(request.store, sorted(latest.items()), limit) for m in batch
        ]

    def context(
        self, definition: CampaignDefinition, settings: Settings, base: dict[str, Any], inputs: ContextInputs
    ) -> dict[str, Any]:
        """Adds ``order``, ``feedback`` (five signed star links) and ``blocks`` (the similar items).

        NoContent("no order to follow up") when there is neither ``order`` nor any order in ``orders``.
        """
        order = inputs.order or (max(inputs.orders, key=lambda o: o.ordered_at) if inputs.orders else None)
        if order is None:
            raise NoContent("no order to follow up")
        key = secret_key(settings)
        feedback = [
            {
                "rating": rating,
                "label": STAR_LABELS[rating],
                "url": feedback_url(
                    settings.public_url,
                    key,
                    order_id=order.id,
                    customer_id=inputs.customer.id,
                    campaign=definition.name,
                    rating=rating,
                    issued_at=inputs.issued_at,
                ),
            }
            for rating in range(1, 6)
        ]
        bought = {line.product.id for line in order.lines}
        similar = inputs.similar
        if similar is not None:
            similar = Block(
                similar.name, tuple(i for i in similar.items if i.product_id not in bought), similar.fallback
            )
        count = definition.follow_up.similar_count if definition.follow_up else definition.recommend.count
        block = block_context(similar, SIMILAR, inputs.products, settings, definition.name, count)
        return dict(
            base,
            order=order_context(order, settings, definition.name),
            feedback=feedback,
            blocks=[block] if block["products"] else [],
        )


KIND = PostPurchaseKind()
