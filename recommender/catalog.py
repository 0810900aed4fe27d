"""Product metadata the rules and reasons need, as parallel arrays (no database here)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class Catalog:
    """Products by id: price (nan = unknown), category (None = none), stock, name.

    >>> Catalog([7, 3], price=[2.5, None], category=["mugs", None], in_stock=[True, False], name=["Mug", "Tea"])
    """

    def __init__(
        self,
        product_id: Sequence[int] | np.ndarray,
        *,
        price: Sequence[float | None] | np.ndarray,
        category: Sequence[str | None] | np.ndarray,
        in_stock: Sequence[bool] | np.ndarray,
        name: Sequence[str | None] | np.ndarray,
    ) -> None:
        ids = np.asarray(product_id, dtype=np.int64)
        n = ids.size
        if not all(len(col) == n for col in (price, category, in_stock, name)):
            raise ValueError("catalog columns have different lengths")
        order = np.argsort(ids, kind="stable")
        self.product_id = ids[order]
        if n and np.any(self.product_id[1:] == self.product_id[:-1]):
            raise ValueError("catalog product ids must be unique")
        prices = np.array([np.nan if p is None else float(p) for p in price], dtype=np.float64)
        self.price = np.where(np.isfinite(prices), prices, np.nan)[order]
        cats = np.array([c or "" for c in category], dtype=object)
        self.category = cats[order] if n else np.empty(0, dtype=object)
        self.in_stock = np.asarray(in_stock, dtype=bool)[order] if n else np.empty(0, dtype=bool)
        names = np.array([x or "" for x in name], dtype=object)
        self.name = names[order] if n else np.empty(0, dtype=object)

    def __len__(self) -> int:
        return int(self.product_id.size)

    def positions(self, product_ids: np.ndarray) -> np.ndarray:
        """Row of each product id in the catalogue, -1 when absent."""
        ids = np.asarray(product_ids, dtype=np.int64)
        if not len(self):
            return np.full(ids.shape, -1, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.product_id, ids), len(self) - 1)
        return np.where(self.product_id[pos] == ids, pos, -1)

    def name_of(self, product_id: int) -> str | None:
        pos = int(self.positions(np.array([product_id]))[0])
        return (self.name[pos] or None) if pos >= 0 else None
