"""``als``: implicit's AlternatingLeastSquares on the confidence matrix (CPU unless ``use_gpu``)."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np

from recommender.interactions import Interactions
from recommender.models.base import with_defaults

#: tuned on a validation month carved from the Online Retail training data (see docs/recommender.md)
DEFAULTS: dict[str, Any] = {
    "factors": 128,
    "regularization": 50.0,
    "alpha": 15.0,
    "iterations": 15,
    "seed": 0,
    "use_gpu": False,
}


class ALSModel:
    name: ClassVar[str] = "als"

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = with_defaults(DEFAULTS, params, "ALS")
        self.user_factors = np.zeros((0, 0), dtype=np.float32)
        self.item_factors = np.zeros((0, 0), dtype=np.float32)

    def fit(self, data: Interactions) -> None:
        from implicit.als import AlternatingLeastSquares

        p = self.params
        with warnings.catch_warnings():
            # implicit warns about multi-threaded BLAS; entry points set OPENBLAS_NUM_THREADS=1
            warnings.simplefilter("ignore", RuntimeWarning)
            # implicit converts its own intermediate COO matrices and warns about it
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            model = AlternatingLeastSquares(
                factors=int(p["factors"]),
                regularization=float(p["regularization"]),
                alpha=float(p["alpha"]),
                iterations=int(p["iterations"]),
                random_state=int(p["seed"]),
                use_gpu=bool(p["use_gpu"]),
                calculate_training_loss=False,
            )
            model.fit(data.weights, show_progress=False)
        if bool(p["use_gpu"]):
            model = model.to_cpu()
        self.user_factors = np.ascontiguousarray(model.user_factors, dtype=np.float32)
        self.item_factors = np.ascontiguousarray(model.item_factors, dtype=np.float32)

    def score(self, data: Interactions, users: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_factors[users] @ self.item_factors.T)

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(self.item_factors, axis=1)
        normed = self.item_factors / np.where(norms > 0, norms, 1.0)[:, None]
        return np.asarray(normed[items] @ normed.T)

    def state(self) -> dict[str, np.ndarray]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    @classmethod
    def from_state(cls, params: dict[str, Any], state: dict[str, np.ndarray]) -> ALSModel:
        model = cls(**params)
        model.user_factors = state["user_factors"].astype(np.float32)
        model.item_factors = state["item_factors"].astype(np.float32)
        return model
