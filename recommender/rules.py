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


def pick_rows(
    candidates: np.ndarray,
    scores: np.ndarray,
    n: int,
    category_codes: np.ndarray,
    max_per_category: int,
) -> np.ndarray:
    """Per row, positions of the first ``n`` finite-score candidates honouring the per-category cap.

    ``candidates``/``scores`` are (rows, k), each row ranked best first with -inf last;
    ``category_codes[item]`` is the item's category as an integer, -1 for none (never capped). Returns
    (rows, n) positions into each row, -1 padded. A candidate is kept when its category occurred fewer
    than ``max_per_category`` times earlier in its row: walking a row and skipping capped candidates
    gives the same picks, since every skipped candidate comes after the first ``max_per_category`` of
    its category (tests/test_recommender_candidates.py checks it against that walk).
    """
    rows, k = candidates.shape
    out = np.full((rows, n), -1, dtype=np.int64)
    if rows == 0 or k == 0:
        return out
    code = category_codes[candidates].astype(np.int64)
    width = int(category_codes.max(initial=-1)) + 2
    # occurrence rank of each (row, category) within its row, in rank order
    key = (np.arange(rows, dtype=np.int64)[:, None] * width + (code + 1)).ravel()
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]])
    group_start = np.repeat(starts, np.diff(np.r_[starts, key.size]))
    seen_before = np.empty(key.size, dtype=np.int64)
    seen_before[order] = np.arange(key.size) - group_start
    keep = np.isfinite(scores) & ((code < 0) | (seen_before.reshape(rows, k) < max_per_category))
    slot = np.cumsum(keep, axis=1) - 1
    keep &= slot < n
    r, c = np.nonzero(keep)
    out[r, slot[r, c]] = c
    return out
