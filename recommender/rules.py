"""Business rules, applied after scoring on over-fetched candidates.

Products with unknown price never satisfy a price bound; products without a category are never excluded
by ``exclude_categories``, never kept by ``only_categories``, and not counted by ``max_per_category``.
Products the model knows but the catalogue does not are never recommended once a catalogue is attached.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommender.catalog import Catalog


@dataclass(frozen=True)
class Rules:
    exclude_categories: frozenset[str] = frozenset()
    only_categories: frozenset[str] | None = None  # promotions: personalise within the promoted category
    exclude_product_ids: frozenset[int] = frozenset()
    max_per_category: int | None = None  # diversity
    min_price: float | None = None
    max_price: float | None = None
    in_stock_only: bool = True
    exclude_bought: bool = True  # for "discover" blocks


def allowed_items(rules: Rules, catalog: Catalog | None, item_ids: np.ndarray) -> np.ndarray:
    """Boolean mask over the model's items (``item_ids``): True where the item may be recommended."""
    ok = ~np.isin(item_ids, np.fromiter(rules.exclude_product_ids, dtype=np.int64, count=-1))
    if catalog is None:
        return ok
    pos = catalog.positions(item_ids)
    known = pos >= 0
    ok &= known
    p = np.where(known, pos, 0)
    if rules.in_stock_only:
        ok &= catalog.in_stock[p]
    price = catalog.price[p]
    if rules.min_price is not None:
        ok &= np.nan_to_num(price, nan=-np.inf) >= rules.min_price
    if rules.max_price is not None:
        ok &= np.nan_to_num(price, nan=np.inf) <= rules.max_price
    category = catalog.category[p]
    if rules.exclude_categories:
        ok &= ~np.isin(category, list(rules.exclude_categories))
    if rules.only_categories is not None:
        ok &= np.isin(category, list(rules.only_categories))
    return ok


def pick(
    candidates: np.ndarray,
    scores: np.ndarray,
    n: int,
    categories: np.ndarray | None,
    max_per_category: int | None,
) -> list[int]:
    """Positions (into ``candidates``) of the first ``n`` finite-score candidates honouring the cap."""
    if max_per_category is None or categories is None:
        finite = np.flatnonzero(np.isfinite(scores))
        return [int(x) for x in finite[:n]]
    taken: list[int] = []
    per: dict[str, int] = {}
    for j in range(candidates.size):
        if len(taken) == n or not np.isfinite(scores[j]):
            break
        cat = categories[candidates[j]]
        if cat:
            if per.get(cat, 0) >= max_per_category:
                continue
            per[cat] = per.get(cat, 0) + 1
        taken.append(j)
    return taken
