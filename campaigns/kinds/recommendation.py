"""recommendation: personal product blocks (buy again, discover, popular) for one customer."""

from __future__ import annotations

from typing import Any

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition
from campaigns.kinds.base import ContextInputs, DataNeeds, KindBase, NoContent
from campaigns.kinds.common import recommendation_blocks


class RecommendationKind(KindBase):
    name = "recommendation"
    description = "personal product picks (buy again, discover, popular) for a segment"
    needs = DataNeeds(recommendations=True)

    def context(
        self, definition: CampaignDefinition, settings: Settings, base: dict[str, Any], inputs: ContextInputs
    ) -> dict[str, Any]:
        """Adds ``blocks``; NoContent("no recommendations") when every block is empty."""
        blocks = recommendation_blocks(definition, settings, inputs.recommendation, inputs.products)
        if not blocks:
            raise NoContent("no recommendations")
        return dict(base, blocks=blocks)


KIND = RecommendationKind()
