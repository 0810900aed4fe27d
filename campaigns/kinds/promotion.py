"""promotion: an offer (coupon code, discount, expiry) with products from the promoted category."""

from __future__ import annotations

from typing import Any

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition, PromotionSpec, parse_promotion
from campaigns.kinds.base import ContextInputs, DataNeeds, KindBase, OptionSpec
from campaigns.kinds.common import long_date, recommendation_blocks
from campaigns.links import add_utm

#: the offer, required by ``promotion`` and optional for kinds that may carry an incentive
PROMOTION_OPTION = OptionSpec(parse_promotion, required=True, hint="(code, discount, expires)")


def promotion_context(spec: PromotionSpec, settings: Settings, campaign: str) -> dict[str, Any]:
    url = settings.shop_url.rstrip("/") + "/"
    return {
        "code": spec.code,
        "discount": spec.discount,
        "expires": long_date(spec.expires),
        "category": spec.category or "",
        # for sentences: "20% off home decor" (the catalogue's "home-decor")
        "category_label": (spec.category or "").replace("-", " ").replace("_", " "),
        "url": add_utm(url, settings, campaign, utm_content="offer"),
    }


class PromotionKind(KindBase):
    name = "promotion"
    description = "an offer (code, discount, expiry) with personal picks from the promoted category"
    needs = DataNeeds(recommendations=True)
    options = {"promotion": PROMOTION_OPTION}

    def context(
        self, definition: CampaignDefinition, settings: Settings, base: dict[str, Any], inputs: ContextInputs
    ) -> dict[str, Any]:
        """Adds ``promotion`` and ``blocks`` (possibly empty: the offer is the content)."""
        assert definition.promotion is not None  # a required option
        category = definition.promotion.category
        blocks = recommendation_blocks(
            definition, settings, inputs.recommendation, inputs.products, category=category
        )
        return dict(
            base, promotion=promotion_context(definition.promotion, settings, definition.name), blocks=blocks
        )


KIND = PromotionKind()
