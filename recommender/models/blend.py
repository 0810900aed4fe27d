"""``blend``: the model behind the email blocks.

``discover_score`` = z(ALS) + ``knn_weight`` * z(item-kNN) + ``popular_weight`` * z(log recent popularity),
z-scored per customer so the parts share one scale. ``score`` (used by the ``repeat`` protocol) puts the
customer's own products first, ordered by the buy-again score plus ``repeat_mix`` times the discover
score, then the discover ranking.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from recommender.interactions import Interactions
from recommender.models.als import ALSModel
from recommender.models.base import standardize
from recommender.models.itemknn import ItemKNNModel
from recommender.models.personal import BuyAgainModel
from recommender.models.popular import PopularModel

#: chosen by `retain tune` on the validation month 2011-10-10 .. 2011-11-09 of Online Retail
DEFAULTS: dict[str, Any] = {"knn_weight": 0.2, "popular_weight": 0.4, "repeat_mix": 0.1}
PARTS = ("als", "itemknn", "popular", "buy_again")


class BlendModel:
    name: ClassVar[str] = "blend"

    def __init__(self, **params: Any) -> None:
        sub = {k: dict(params.pop(k, {}) or {}) for k in PARTS}
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown blend parameter(s): {', '.join(sorted(unknown))}")
        self.als = ALSModel(**sub["als"])
        self.itemknn = ItemKNNModel(**sub["itemknn"])
        self.popular = PopularModel(**sub["popular"])
        self.buy_again = BuyAgainModel(**sub["buy_again"])
        self.params: dict[str, Any] = {**DEFAULTS, **params}

    def full_params(self) -> dict[str, Any]:
        return {**self.params, **{k: dict(getattr(self, k).params) for k in PARTS}}

    def fit(self, data: Interactions) -> None:
        for part in PARTS:
            getattr(self, part).fit(data)

    def discover_score(self, data: Interactions, users: np.ndarray) -> np.ndarray:
        out = standardize(self.als.score(data, users))
        if self.params["knn_weight"]:
            out += float(self.params["knn_weight"]) * standardize(self.itemknn.score(data, users))
        if self.params["popular_weight"]:
            pop = np.log1p(self.popular.item_scores)[None, :]
            out += float(self.params["popular_weight"]) * standardize(pop)
        return out

    def score(self, data: Interactions, users: np.ndarray) -> np.ndarray:
        out = self.discover_score(data, users)
        own = data.aligned(self.buy_again.pair_scores(data))[users]
        r = np.repeat(np.arange(len(users)), np.diff(own.indptr))
        # bought products rank above every discovery, in buy-again order
        top = out.max(axis=1)
        # the discover score re-orders own products a little (``repeat_mix``) but never sinks them
        mix = float(self.params["repeat_mix"]) * out[r, own.indices]
        out[r, own.indices] = top[r] + 100.0 + own.data + mix
        return out

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        return self.itemknn.item_similarity(items)

    def state(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for part in PARTS:
            out.update({f"{part}.{k}": v for k, v in getattr(self, part).state().items()})
        return out

    @classmethod
    def from_state(cls, params: dict[str, Any], state: dict[str, np.ndarray]) -> BlendModel:
        model = cls(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in params.items()})
        for part in PARTS:
            prefix = part + "."
            sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            klass = type(getattr(model, part))
            setattr(model, part, klass.from_state(getattr(model, part).params, sub))
        return model
