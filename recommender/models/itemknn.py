"""``itemknn``: item-item neighbours (implicit's BM25 or cosine), also the source of the reasons
("Because you bought X") and of ``similar_items`` (products bought together)."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recommender.interactions import Interactions

DEFAULTS: dict[str, Any] = {"K": 200, "K1": 1.2, "B": 0.75, "similarity": "bm25"}


class ItemKNNModel:
    name: ClassVar[str] = "itemknn"

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown item-kNN parameter(s): {', '.join(sorted(unknown))}")
        self.params: dict[str, Any] = {**DEFAULTS, **params}
        if self.params["similarity"] not in {"bm25", "cosine"}:
            raise TypeError(
                f"item-kNN similarity must be 'bm25' or 'cosine', got {self.params['similarity']!r}"
            )
        #: item x item, row j holds the neighbours of item j (score of item i given a purchase of j)
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)

    def fit(self, data: Interactions) -> None:
        from implicit.nearest_neighbours import BM25Recommender, CosineRecommender

        p = self.params
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            # implicit converts its own intermediate COO matrices and warns about it
            warnings.filterwarnings("ignore", message="Method expects CSR input")
            if p["similarity"] == "bm25":
                model: Any = BM25Recommender(K=int(p["K"]), K1=float(p["K1"]), B=float(p["B"]))
            else:
                model = CosineRecommender(K=int(p["K"]))
            model.fit(data.weights, show_progress=False)
        sim = sp.csr_matrix(model.similarity, dtype=np.float32)
        sim.sort_indices()
        self.similarity = sim

    def score(self, data: Interactions, users: np.ndarray) -> np.ndarray:
        return (data.weights[users] @ self.similarity).toarray()

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        return self.similarity[items].toarray()

    def because(self, data: Interactions, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """For each (user, recommended item) pair, the bought item that contributes most to it, or -1."""
        if len(users) == 0:
            return np.empty(0, dtype=np.int64)
        contrib = data.weights[users].multiply(self.similarity.T.tocsr()[items]).tocsr()
        has = np.diff(contrib.indptr) > 0
        best = np.asarray(contrib.argmax(axis=1)).ravel()
        return np.where(has, best, -1).astype(np.int64)

    def state(self) -> dict[str, np.ndarray]:
        s = self.similarity
        return {
            "sim_data": s.data,
            "sim_indices": s.indices,
            "sim_indptr": s.indptr,
            "sim_shape": np.array(s.shape),
        }

    @classmethod
    def from_state(cls, params: dict[str, Any], state: dict[str, np.ndarray]) -> ItemKNNModel:
        model = cls(**params)
        shape = tuple(int(x) for x in state["sim_shape"])
        model.similarity = sp.csr_matrix(
            (state["sim_data"].astype(np.float32), state["sim_indices"], state["sim_indptr"]), shape=shape
        )
        return model
