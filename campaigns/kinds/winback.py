"""winback: for customers drifting away: "we miss you", an optional incentive, a few products."""

from __future__ import annotations

from typing import Any

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition
from campaigns.kinds.common import long_date, recommendation_blocks
from campaigns.kinds.promotion import promotion_context
from campaigns.store.records import CustomerRecord, OrderRecord, ProductRecord
from recommender.blocks import Block, Recommendation


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
    """Adds ``last_order_date`` (may be empty), ``promotion`` (None without one) and ``blocks``."""
    last = max((o.ordered_at for o in orders), default=None)
    promo = (
        promotion_context(definition.promotion, settings, definition.name) if definition.promotion else None
    )
    blocks = recommendation_blocks(definition, settings, recommendation, products)
    return dict(base, last_order_date=long_date(last), promotion=promo, blocks=blocks)
