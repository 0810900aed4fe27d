"""The model protocol: every recommender model scores items for customers in matrix-index space.

``fit(data)`` learns from :class:`~recommender.interactions.Interactions`; ``score(data, users)`` returns a
dense ``(len(users), n_items)`` float32 array (higher is better); ``recommend`` and ``similar_items`` are
batched top-n on top of it. ``state()`` / ``from_state`` give numpy arrays for ``.npz`` files (no pickle).
Ids are mapped to indices by the caller (``Interactions.users`` / ``.items``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import numpy as np
import scipy.sparse as sp

from recommender.interactions import Interactions


class Model(Protocol):
    name: ClassVar[str]
    params: dict[str, Any]

    def fit(self, data: Interactions) -> None: ...

    def score(self, data: Interactions, users: np.ndarray) -> np.ndarray: ...

    def item_similarity(self, items: np.ndarray) -> np.ndarray: ...

    def state(self) -> dict[str, np.ndarray]: ...


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``n`` best columns of each row, best first; -inf columns come last.

    Ties break towards the lower column index, so results are deterministic.
    """
    n = max(0, min(n, scores.shape[1]))
    if n == 0:
        empty = np.empty((scores.shape[0], 0))
        return empty.astype(np.int64), empty.astype(np.float32)
    if n < scores.shape[1]:
        part = np.argpartition(scores, scores.shape[1] - n, axis=1)[:, -n:]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -vals), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx.astype(np.int64), np.take_along_axis(vals, order, axis=1)


def mask_seen(scores: np.ndarray, history: sp.csr_matrix, users: np.ndarray) -> None:
    """Set the score of every item a user has bought to -inf (in place)."""
    rows = history[users]
    r, c = rows.nonzero()
    scores[r, c] = -np.inf


def recommend(
    model: Model, data: Interactions, users: np.ndarray, n: int, *, exclude_bought: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Batched top-n for known users (matrix indices): ``(item indices, scores)``, each (len(users), n)."""
    scores = model.score(data, users)
    if exclude_bought:
        mask_seen(scores, data.counts, users)
    return top_n(scores, n)


def standardize(scores: np.ndarray) -> np.ndarray:
    """Per-row z-scores (rows with no spread become zeros): puts models on one scale for blending."""
    # float32 work arrays, float64 accumulation: half the memory traffic of the float64 version
    out = np.asarray(scores, dtype=np.float32).copy()
    mean = out.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    out -= mean
    std = np.sqrt(np.einsum("ij,ij->i", out, out, dtype=np.float64) / max(out.shape[1], 1)).astype(np.float32)
    out /= np.where(std > 0, std, np.float32(1.0))[:, None]
    return out
