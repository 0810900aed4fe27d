"""promotion: an offer (coupon code, discount, expiry) with products from the promoted category."""

from __future__ import annotations

from typing import Any

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition, PromotionSpec
from campaigns.kinds.common import long_date, recommendation_blocks
from campaigns.links import add_utm
from campaigns.store.records import CustomerRecord, OrderRecord, ProductRecord
from recommender.blocks import Block, Recommendation


def promotion_context(spec: PromotionSpec, settings: Settings, campaign: str) -> dict[str, Any]:
    url = settings.shop_url.rstrip("/") + "/"
    return {
        "code": spec.code,
        "discount": spec.discount,
        "expires": long_date(spec.expires),
        "category": spec.category or "",
        "url": add_utm(url, settings, campaign, utm_content="offer"),
    }


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
    """Adds ``promotion`` and ``blocks`` (possibly empty: the offer is the content)."""
    assert definition.promotion is not None  # definition.py requires it for this kind
    category = definition.promotion.category
    blocks = recommendation_blocks(definition, settings, recommendation, products, category=category)
    return dict(
        base, promotion=promotion_context(definition.promotion, settings, definition.name), blocks=blocks
    )
