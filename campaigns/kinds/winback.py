"""winback: for customers drifting away: "we miss you", an optional incentive, a few products."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition
from campaigns.kinds.base import ContextInputs, DataNeeds, KindBase
from campaigns.kinds.common import long_date, recommendation_blocks
from campaigns.kinds.promotion import PROMOTION_OPTION, promotion_context


class WinbackKind(KindBase):
    name = "winback"
    description = "we miss you: the last order's date, an optional incentive, a few products"
    needs = DataNeeds(recommendations=True, orders=1)
    options = {"promotion": replace(PROMOTION_OPTION, required=False)}

    def context(
        self, definition: CampaignDefinition, settings: Settings, base: dict[str, Any], inputs: ContextInputs
    ) -> dict[str, Any]:
        """Adds ``last_order_date`` (may be empty), ``promotion`` (None without one) and ``blocks``."""
        last = max((o.ordered_at for o in inputs.orders), default=None)
        promo = (
            promotion_context(definition.promotion, settings, definition.name)
            if definition.promotion
            else None
        )
        blocks = recommendation_blocks(definition, settings, inputs.recommendation, inputs.products)
        return dict(base, last_order_date=long_date(last), promotion=promo, blocks=blocks)


KIND = WinbackKind()
