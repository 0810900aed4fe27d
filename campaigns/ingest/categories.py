"""Demo categories for products that come without one (the UCI file has none).

A product's category is the first rule whose keyword appears in its (upper-case) description.
Good enough for demo segments ("bought category"), promotions within a category and the
recommender's diversity rule; a real shop imports its own categories.
"""

from __future__ import annotations

import re

CATEGORY_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("gift-wrap", ("WRAP", "GIFT BAG", "TISSUE", "RIBBON", "GIFT TAPE")),
    ("christmas", ("CHRISTMAS", "XMAS", "ADVENT", "SANTA", "REINDEER", "SNOWFLAKE", "NATIVITY")),
    ("cards-stationery", ("CARD", "NOTEBOOK", "PENCIL", "PEN ", "STICKER", "ENVELOPE", "JOURNAL", "ERASER", "NOTE")),
    ("bags", ("BAG", "PURSE", "SHOPPER", "TOTE", "RUCKSACK", "WALLET")),
    ("candles-lights", ("CANDLE", "T-LIGHT", "TEALIGHT", "LANTERN", "LIGHT", "LAMP", "NIGHT LIGHT")),
    ("kitchen", ("MUG", "CUP", "PLATE", "BOWL", "TEA", "CAKE", "BAKING", "LUNCH BOX", "NAPKIN", "SPOON", "JAR",
                 "COASTER", "TRAY", "BOTTLE", "APRON", "KITCHEN", "TIN", "CUTLERY", "RECIPE", "JUG", "GLASS")),
    ("party", ("PARTY", "BUNTING", "BALLOON", "CONFETTI", "STRAWS", "CAKE CASES", "PAPER CHAIN")),
    ("toys-games", ("TOY", "GAME", "DOLL", "PUZZLE", "SKIPPING", "SPACEBOY", "DOLLY", "BLOCKS", "PLAYHOUSE")),
    ("garden", ("GARDEN", "PLANT", "FLOWER POT", "BIRD", "WATERING", "PEG")),
    ("jewellery-accessories", ("NECKLACE", "EARRING", "BRACELET", "RING", "HAIR", "BROOCH", "UMBRELLA", "SCARF")),
    ("home-decor", ("FRAME", "CLOCK", "SIGN", "HEART", "CUSHION", "DOORMAT", "MIRROR", "VASE", "HOOK", "HANGER",
                    "WALL", "DECORATION", "ORNAMENT", "DOORSTOP", "DRAWER", "BOX", "STORAGE", "BASKET", "CABINET")),
)  # fmt: skip

OTHER = "other"
_COMPILED = [(name, re.compile("|".join(re.escape(k) for k in keys))) for name, keys in CATEGORY_RULES]


def category_for(description: str) -> str:
    """The demo category of a product description (``"other"`` when no keyword matches)."""
    text = description.upper()
    for name, pattern in _COMPILED:
        if pattern.search(text):
            return name
    return OTHER
