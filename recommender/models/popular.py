"""``popular``: the most bought products in a recent window (cold start, and the first baseline)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from recommender.interactions import Interactions
from recommender.models.base import SameForEveryone, number, top_n


class PopularModel(SameForEveryone):
    """Score = distinct customers who bought the item in the last ``window_days`` (plus an all-time
    tie-break), the same for every customer. ``window_days <= 0`` counts all time."""

    name: ClassVar[str] = "popular"

    def __init__(self, window_days: float = 30.0) -> None:
        self.params: dict[str, Any] = {"window_days": number("popular 'window_days'", window_days)}
        self.item_scores = np.zeros(0, dtype=np.float32)

    def fit(self, data: Interactions) -> None:
        cols = data.counts.indices
        n_items = data.shape[1]
        window = self.params["window_days"]
        recent = np.bincount(cols[data.age_days <= window] if window > 0 else cols, minlength=n_items)
        ever = np.bincount(cols, minlength=n_items)
        self.item_scores = (recent + ever / (ever.max() + 1.0)).astype(np.float32)

    def top_allowed(self, allowed: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most popular ``allowed`` items and their scores, best first (fewer when fewer are
        allowed; ties go to the lower index)."""
        scores = np.where(allowed, self.item_scores, -np.inf)[None, :].astype(np.float32)
        idx, vals = top_n(scores, k)
        keep = np.isfinite(vals[0])
        return idx[0][keep], vals[0][keep]
