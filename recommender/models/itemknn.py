"""``itemknn``: item-item neighbours (implicit's BM25 or cosine), also the source of the reasons
("Because you bought X") and of ``similar_items`` (products bought together)."""

from __future__ import annotations

import warnings
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recommender.interactions import Interactions
from recommender.models.base import csr_from_state, csr_state, sparse_z_at, with_defaults

DEFAULTS: dict[str, Any] = {"K": 200, "K1": 1.2, "B": 0.75, "similarity": "bm25"}
#: catalogues up to this size keep a dense copy of the similarity for scoring (64 MB at 4,096 products)
DENSE_SIMILARITY = 4_096


class ItemKNNModel:
    name: ClassVar[str] = "itemknn"

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = with_defaults(DEFAULTS, params, "item-kNN")
        if self.params["similarity"] not in {"bm25", "cosine"}:
            raise TypeError(
                f"item-kNN similarity must be 'bm25' or 'cosine', got {self.params['similarity']!r}"
            )
        #: item x item, row j holds the neighbours of item j (score of item i given a purchase of j)
        self.similarity = sp.csr_matrix((0, 0), dtype=np.float32)
        self._dense: tuple[sp.csr_matrix, np.ndarray] | None = None  # (similarity, its dense copy)

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
        rows = data.weights[users]
        dense = self._dense_similarity()
        if dense is None:
            return np.asarray((rows @ self.similarity).toarray())
        # the rows are nearly dense on small catalogues: CSC times the dense similarity (each similarity
        # row added into its buyers' rows) is ~2x faster than the sparse product, same sums, same order
        return np.asarray(rows.tocsc() @ dense, dtype=np.float32)

    def _dense_similarity(self) -> np.ndarray | None:
        """The similarity as a dense array up to ``DENSE_SIMILARITY`` products (built once), else None."""
        s = self.similarity
        if s.shape[0] > DENSE_SIMILARITY:
            return None
        if self._dense is None or self._dense[0] is not s:
            self._dense = (s, s.toarray())
        return self._dense[1]

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        return np.asarray(self.similarity[items].toarray())

    def warm(self) -> None:
        """Sort the similarity rows if they are not (``because`` searches them) and build the dense copy
        (before concurrent calls)."""
        self.similarity.sort_indices()
        self._dense_similarity()

    def because(self, data: Interactions, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """For each (user, recommended item) pair, the bought item that contributes most to it, or -1."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        if users.size == 0:
            return np.empty(0, dtype=np.int64)
        own = data.weights[users]  # one row per pair: the user's bought items and weights
        if own.nnz == 0 or self.similarity.nnz == 0:
            return np.full(users.size, -1, dtype=np.int64)
        pair = np.repeat(np.arange(users.size), np.diff(own.indptr))
        bought = own.indices.astype(np.int64)
        # similarity[bought, item] for every (pair, bought item): scipy's binary searches in the sorted rows
        contrib = own.data * np.asarray(self.similarity[bought, items[pair]]).ravel()
        # the best contribution of each pair; ties go to the first (lowest) bought item
        has = np.diff(own.indptr) > 0
        best = np.zeros(users.size)
        best[has] = np.maximum.reduceat(contrib, own.indptr[:-1][has])
        first = np.flatnonzero(contrib == best[pair])
        winner_pair, at = np.unique(pair[first], return_index=True)
        out = np.full(users.size, -1, dtype=np.int64)
        out[winner_pair] = bought[first[at]]
        out[best <= 0] = -1
        return out

    def z_scores_at(self, data: Interactions, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Per-user z-scored kNN scores at ``items`` (shape (len(users), k)), with the mean and standard
        deviation over all products, as ``standardize(score(data, users))`` would give."""
        r = np.repeat(np.arange(len(users), dtype=np.int64), items.shape[1])
        return self.z_at(data, users, r, np.asarray(items).ravel()).reshape(items.shape)

    def z_at(self, data: Interactions, users: np.ndarray, r: np.ndarray, c: np.ndarray) -> np.ndarray:
        """``standardize(score(data, users))[r, c]`` from the sparse score rows."""
        return sparse_z_at(data.weights[users] @ self.similarity, r, c)

    def state(self) -> dict[str, np.ndarray]:
        return csr_state(self.similarity, "sim_")

    @classmethod
    def from_state(cls, params: dict[str, Any], state: dict[str, np.ndarray]) -> ItemKNNModel:
        model = cls(**params)
        model.similarity = csr_from_state(state, "sim_")
        model.warm()
        return model
