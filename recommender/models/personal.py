"""Personal models: the customer's own purchases ("buy again").

- ``personal`` — the second baseline: the customer's own most-bought products (number of orders holding
  the product), padded with popular products when the customer has fewer than ``n`` of them.
- ``buy_again`` — the block the emails use: own products ranked by ``log1p(orders)``, decayed by the time
  since the last purchase (``half_life_days``), and boosted when a regular repurchase interval says the
  product is due again (``due_weight``). Items never bought score 0.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from recommender.interactions import Interactions
from recommender.models.popular import PopularModel


class PersonalFrequencyModel:
    name: ClassVar[str] = "personal"

    def __init__(self, window_days: float = 0.0) -> None:
        self.params: dict[str, Any] = {"window_days": float(window_days)}
        self.popular = PopularModel(window_days)

    def fit(self, data: Interactions) -> None:
        self.popular.fit(data)

    def score(self, data: Interactions, users: np.ndarray) -> np.ndarray:
        pad = self.popular.item_scores / (self.popular.item_scores.max() + 1.0)  # < 1: below any purchase
        out = np.tile(pad, (len(users), 1))
        rows = data.counts[users]
        r = np.repeat(np.arange(len(users)), np.diff(rows.indptr))
        # ties between equal counts go to the more popular product (the pad is < 1)
        out[r, rows.indices] += rows.data + 1.0
        return out

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        return self.popular.item_similarity(items)

    def state(self) -> dict[str, np.ndarray]:
        return self.popular.state()

    @classmethod
    def from_state(cls, params: dict[str, Any], state: dict[str, np.ndarray]) -> PersonalFrequencyModel:
        model = cls(**params)
        model.popular = PopularModel.from_state(params, state)
        return model


class BuyAgainModel:
    name: ClassVar[str] = "buy_again"

    def __init__(self, half_life_days: float = 90.0, due_weight: float = 0.5) -> None:
        self.params: dict[str, Any] = {
            "half_life_days": float(half_life_days),
            "due_weight": float(due_weight),
        }

    def fit(self, data: Interactions) -> None:
        """Nothing to learn: the scores come from the customer's own history."""

    def pair_scores(self, data: Interactions) -> np.ndarray:
        """Buy-again score of every stored pair, aligned with ``data.counts.data`` (all > 0)."""
        n = data.counts.data.astype(np.float64)
        age = data.age_days.astype(np.float64)
        score = np.log1p(n) * np.power(0.5, age / self.params["half_life_days"])
        repeat = n > 1
        interval = np.where(repeat, data.span_days / np.maximum(n - 1, 1), 0.0)
        due = np.where(repeat, np.exp(-np.abs(age - interval) / np.maximum(interval, 7.0)), 0.0)
        return np.asarray(score * (1.0 + self.params["due_weight"] * due) + 1e-9, dtype=np.float32)

    def score(self, data: Interactions, users: np.ndarray) -> np.ndarray:
        return np.asarray(data.aligned(self.pair_scores(data))[users].toarray())

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        raise NotImplementedError("buy_again has no item similarity")

    def state(self) -> dict[str, np.ndarray]:
        return {}

    @classmethod
    def from_state(cls, params: dict[str, Any], state: dict[str, np.ndarray]) -> BuyAgainModel:
        return cls(**params)
