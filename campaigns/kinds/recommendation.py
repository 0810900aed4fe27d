"""recommendation: personal product blocks (buy again, discover, popular) for one customer."""

from __future__ import annotations

from typing import Any

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition
from campaigns.kinds.common import NoContent, recommendation_blocks
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
    """Adds ``blocks``; NoContent("no recommendations") when every block is empty."""
    blocks = recommendation_blocks(definition, settings, recommendation, products)
    if not blocks:
        raise NoContent("no recommendations")
    return dict(base, blocks=blocks)
