"""``ease``: EASE^R (Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019).

Closed form: with the item Gram matrix ``G = X^T X + l2 * I`` of the binary customer x product matrix ``X``
and ``P = G^-1``, the item-item weights are ``B = -P / diag(P)`` with a zero diagonal; a customer's scores
are ``x_u B``. The Gram matrix is dense (n_items^2): catalogues with more than ``max_items`` products are
restricted to the ``max_items`` products bought by the most customers (the rest score 0, i.e. are never
preferred to a product the model knows). The fit is cubic in the products kept: measured 1.7 s at 2,048,
5.4 s at 4,096 (the default) and 37 s (+440 MB peak) at 8,192 on a loaded 2-core machine
(``bench/bench_ease.py``; docs/recommender.md).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import scipy.linalg as la

from recommender.interactions import Interactions
from recommender.models.base import number, with_defaults

DEFAULTS: dict[str, Any] = {"l2": 500.0, "max_items": 4096}


class EASEModel:
    name: ClassVar[str] = "ease"

    def __init__(self, **params: Any) -> None:
        self.params: dict[str, Any] = with_defaults(DEFAULTS, params, "EASE")
        self.params["l2"] = number("EASE 'l2'", self.params["l2"], positive=True)
        self.items = np.zeros(0, dtype=np.int64)  # model item index of each column of ``weights``
        self.weights = np.zeros((0, 0), dtype=np.float32)
        self.n_items = 0

    def fit(self, data: Interactions) -> None:
        n_items = data.shape[1]
        buyers = np.bincount(data.counts.indices, minlength=n_items)
        limit = int(self.params["max_items"])
        if n_items > limit:
            # the most bought products, in index order (ties: lower index)
            keep = np.sort(np.argsort(-buyers, kind="stable")[:limit])
        else:
            keep = np.arange(n_items)
        x = data.counts[:, keep].astype(np.float32)
        x.data[:] = 1.0
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += float(self.params["l2"])
        # G is symmetric positive definite: Cholesky inverse (half the work of a general inverse)
        factor = la.cho_factor(gram, overwrite_a=True, check_finite=False)
        precision = la.cho_solve(factor, np.eye(keep.size), overwrite_b=True, check_finite=False)
        weights = precision / -np.diag(precision)[None, :]
        np.fill_diagonal(weights, 0.0)
        self.items = keep.astype(np.int64)
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)
        self.n_items = n_items

    def score(self, data: Interactions, users: np.ndarray) -> np.ndarray:
        # column-major (CSC) times dense: scipy then adds each weight row into the rows of its buyers, ~4x
        # faster than row by row (CSR) at 1,024 x 3,659 x 3,659 and the same sums in the same order
        rows = data.counts[users]
        if self.items.size == self.n_items:  # every product kept: no column selection
            x = rows.astype(np.float32)
            x.data[:] = 1.0
            return np.asarray(x.tocsc() @ self.weights, dtype=np.float32)
        x = rows[:, self.items].astype(np.float32)
        x.data[:] = 1.0
        out = np.zeros((len(users), self.n_items), dtype=np.float32)
        out[:, self.items] = x.tocsc() @ self.weights
        return out

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        position = np.full(self.n_items, -1, dtype=np.int64)
        position[self.items] = np.arange(self.items.size)
        out = np.zeros((len(items), self.n_items), dtype=np.float32)
        pos = position[np.asarray(items, dtype=np.int64)]
        known = pos >= 0
        out[np.flatnonzero(known)[:, None], self.items[None, :]] = self.weights[pos[known]]
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {"items": self.items, "weights": self.weights, "n_items": np.array([self.n_items])}

    @classmethod
    def from_state(cls, params: dict[str, Any], state: dict[str, np.ndarray]) -> EASEModel:
        model = cls(**params)
        model.items = state["items"].astype(np.int64)
        model.weights = state["weights"].astype(np.float32)
        model.n_items = int(state["n_items"][0])
        return model
