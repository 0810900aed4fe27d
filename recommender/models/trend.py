"""``trend``: products whose sales are rising — recent buyers against the period before, the same for
every customer.

Score of a product = ``log((recent + smoothing) / (prior * recent_days / prior_days + smoothing))``:
``recent`` counts the customers whose last purchase of it is at most ``recent_days`` old, ``prior``
those who bought it in the ``prior_days`` before (their last purchase falls there, or they bought it
already before the recent period: first purchase older than ``recent_days``). The prior count is scaled
to the recent period's length, and ``smoothing`` keeps a product bought by one or two customers from
topping the list. It is a *growth* signal, not a popularity one: alone it ranks poorly (Online Retail
validation nDCG@10 about 0.04); in the blend it adds what popularity misses before a seasonal peak
(Online Retail's autumn ramp to Christmas: docs/recommender.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from recommender.interactions import Interactions
from recommender.models.base import SameForEveryone, number


class TrendModel(SameForEveryone):
    name: ClassVar[str] = "trend"

    def __init__(self, recent_days: float = 14.0, prior_days: float = 28.0, smoothing: float = 3.0) -> None:
        given = {"recent_days": recent_days, "prior_days": prior_days, "smoothing": smoothing}
        self.params: dict[str, Any] = {k: number(f"trend '{k}'", v, positive=True) for k, v in given.items()}
        self.item_scores = np.zeros(0, dtype=np.float32)

    def fit(self, data: Interactions) -> None:
        cols = data.counts.indices
        n_items = data.shape[1]
        recent_days, prior_days = self.params["recent_days"], self.params["prior_days"]
        age = data.age_days.astype(np.float64)
        first = age + data.span_days.astype(np.float64)
        recent_pairs = age <= recent_days
        prior_pairs = ((age > recent_days) & (age <= recent_days + prior_days)) | (
            recent_pairs & (first > recent_days)
        )
        recent = np.bincount(cols[recent_pairs], minlength=n_items).astype(np.float64)
        prior = np.bincount(cols[prior_pairs], minlength=n_items) * (recent_days / prior_days)
        s = self.params["smoothing"]
        self.item_scores = np.log((recent + s) / (prior + s)).astype(np.float32)
