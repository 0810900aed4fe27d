"""What a recommendation hands to the campaign engine: labelled blocks of scored items.

Plain data, shared by the recommender (which fills it) and the campaign kinds (which read it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

BUY_AGAIN = "buy_again"
DISCOVER = "discover"
POPULAR = "popular"
SIMILAR = "similar"  # complementary items for one order (post-purchase)


@dataclass(frozen=True, slots=True)
class RecommendedItem:
    product_id: int
    score: float
    #: a short human reason, e.g. "Because you bought WHITE HANGING HEART T-LIGHT HOLDER"
    reason: str | None = None
    #: the past product this one is most similar to (the source of the reason), if any
    because_product_id: int | None = None


@dataclass(frozen=True, slots=True)
class Block:
    name: str  # buy_again | discover | popular | similar
    items: tuple[RecommendedItem, ...]
    #: set when the block is not personal: e.g. "popular: customer unknown to the model"
    fallback: str | None = None


@dataclass(frozen=True, slots=True)
class Recommendation:
    customer_id: int
    blocks: tuple[Block, ...] = field(default_factory=tuple)

    def block(self, name: str) -> Block | None:
        return next((b for b in self.blocks if b.name == name), None)
