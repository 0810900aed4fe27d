"""post_purchase: thank-you N days after an order, what they bought, 1-5 star feedback links,
and complementary products (``similar_items`` of the order)."""

from __future__ import annotations

from typing import Any

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition
from campaigns.kinds.common import NoContent, block_context, order_context, secret_key
from campaigns.store.records import CustomerRecord, OrderRecord, ProductRecord
from campaigns.tokens import feedback_url
from recommender.blocks import SIMILAR, Block, Recommendation

STAR_LABELS = {1: "Poor", 2: "Fair", 3: "Good", 4: "Very good", 5: "Excellent"}


def context(
    definition: CampaignDefinition,
    settings: Settings,
    base: dict[str, Any],
    *,
    customer: CustomerRecord,
    recommendation: Recommendation | None,
    products: dict[int, ProductRecord],
    orders: list[OrderRecord],
    order: OrderRecord | None,
    similar: Block | None,
) -> dict[str, Any]:
    """Adds ``order``, ``feedback`` (five signed star links) and ``blocks`` (the similar items).

    NoContent("no order to follow up") when there is neither ``order`` nor any order in ``orders``.
    """
    order = order or (max(orders, key=lambda o: o.ordered_at) if orders else None)
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
                customer_id=customer.id,
                campaign=definition.name,
                rating=rating,
            ),
        }
        for rating in range(1, 6)
    ]
    bought = {line.product.id for line in order.lines}
    if similar is not None:
        similar = Block(
            similar.name, tuple(i for i in similar.items if i.product_id not in bought), similar.fallback
        )
    count = definition.follow_up.similar_count if definition.follow_up else definition.recommend.count
    block = block_context(similar, SIMILAR, products, settings, definition.name, count)
    return dict(
        base,
        order=order_context(order, settings, definition.name),
        feedback=feedback,
        blocks=[block] if block["products"] else [],
    )
