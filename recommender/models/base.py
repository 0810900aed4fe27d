"""The model protocol: every recommender model scores items for customers in matrix-index space.

``fit(data)`` learns from :class:`~recommender.interactions.Interactions`; ``score(data, users)`` returns a
dense ``(len(users), n_items)`` float32 array (higher is better); ``recommend`` and ``similar_items`` are
batched top-n on top of it. ``state()`` / ``from_state`` give numpy arrays for ``.npz`` files (no pickle).
Ids are mapped to indices by the caller (``Interactions.users`` / ``.items``).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import scipy.sparse as sp

from recommender.interactions import Interactions


@runtime_checkable
class Model(Protocol):
    """What every model is. Constructed with its parameters as keyword arguments (``TypeError`` for an
    unknown one); ``params`` holds all of them (JSON-able: they go into the model file).

    - ``fit(data)`` learns from :class:`~recommender.interactions.Interactions`;
    - ``score(data, users)``: dense ``(len(users), n_items)`` float scores, higher is better, over every
      item including bought ones (the ``repeat`` ranking);
    - ``item_similarity(items)``: ``(len(items), n_items)`` similarities (``similar_items``);
    - ``state()`` / ``from_state(params, state)``: numpy arrays for ``.npz`` files (no pickle).

    Optional: ``discover_score(data, users)`` when the ranking of products new to a customer differs
    from ``score`` (bought products are masked by the caller either way); ``discover_top(data, users, n,
    allowed=, exclude_bought=)`` for models that find the top ``n`` without a dense score row (large
    catalogues); ``own_scores(data, users)`` for the order of a customer's own products (``buy_again``).
    """

    name: ClassVar[str]
    params: dict[str, Any]

    def fit(self, data: Interactions) -> None: ...

    def score(self, data: Interactions, users: np.ndarray) -> np.ndarray: ...

    def item_similarity(self, items: np.ndarray) -> np.ndarray: ...

    def state(self) -> dict[str, np.ndarray]: ...

    @classmethod
    def from_state(cls, params: dict[str, Any], state: dict[str, np.ndarray]) -> Self: ...


def with_defaults(defaults: dict[str, Any], params: dict[str, Any], label: str) -> dict[str, Any]:
    """``params`` over ``defaults``; TypeError naming the unknown ones (the protocol's constructor rule)."""
    unknown = set(params) - set(defaults)
    if unknown:
        raise TypeError(f"unknown {label} parameter(s): {', '.join(sorted(unknown))}")
    return {**defaults, **params}


def number(label: str, value: Any, *, positive: bool = False, limit: float = float("inf")) -> float:
    """A numeric model parameter (hand-written ``--params`` JSON) as a float; ``TypeError`` naming
    ``label`` when it is not a finite number (a string, null, a boolean, NaN, 1e400), is not positive
    where it must be, or lies beyond ``limit`` either side of zero."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not np.isfinite(value)
    ):
        raise TypeError(f"{label} must be a finite number, not {value!r}")
    x = float(value)
    if positive and not x > 0:
        raise TypeError(f"{label} must be positive, not {value!r}")
    if abs(x) > limit:
        raise TypeError(f"{label} must be between -{limit:g} and {limit:g}, not {value!r}")
    return x


def csr_state(matrix: sp.csr_matrix, prefix: str) -> dict[str, np.ndarray]:
    """A CSR matrix as ``{prefix}data/indices/indptr/shape`` arrays (for ``state()``)."""
    return {
        f"{prefix}data": matrix.data,
        f"{prefix}indices": matrix.indices,
        f"{prefix}indptr": matrix.indptr,
        f"{prefix}shape": np.array(matrix.shape),
    }


def csr_from_state(state: dict[str, np.ndarray], prefix: str) -> sp.csr_matrix:
    """The float32 CSR matrix :func:`csr_state` wrote."""
    shape = tuple(int(x) for x in state[f"{prefix}shape"])
    parts = (state[f"{prefix}data"].astype(np.float32), state[f"{prefix}indices"], state[f"{prefix}indptr"])
    return sp.csr_matrix(parts, shape=shape)


def discover_scores(model: Model, data: Interactions, users: np.ndarray) -> np.ndarray:
    """The model's ranking of products for the ``discover`` block (before masking bought products)."""
    scorer = getattr(model, "discover_score", None)
    return np.asarray(scorer(data, users) if callable(scorer) else model.score(data, users))


def top_n(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of the ``n`` best columns of each row, best first; -inf columns come last.

    Ties break towards the lower column index, so results are deterministic. Wide rows go through a
    threshold first: the n-th best of every 16th column is a lower bound for the row's n-th best, so only
    columns at or above it (~16n per row) are sorted — about 2x faster than ``argpartition`` over
    2,048 x 3,659 scores, same result (tests/test_recommender_candidates.py checks it against a full
    sort).
    """
    n = max(0, min(n, scores.shape[1]))
    if n == 0:
        empty = np.empty((scores.shape[0], 0))
        return empty.astype(np.int64), empty.astype(np.float32)
    if scores.shape[1] < 64 * n or scores.shape[0] == 0:
        return _top_n_partition(scores, n)
    sample = scores[:, ::16]
    threshold = np.partition(sample, sample.shape[1] - n, axis=1)[:, sample.shape[1] - n]
    rows, cols = np.nonzero(scores >= threshold[:, None])
    vals = scores[rows, cols]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    rank = np.arange(rows.size) - np.searchsorted(rows, rows)
    take = rank < n
    idx = np.zeros((scores.shape[0], n), dtype=np.int64)
    out = np.full((scores.shape[0], n), -np.inf, dtype=scores.dtype)
    idx[rows[take], rank[take]] = cols[take]
    out[rows[take], rank[take]] = vals[take]
    return idx, out


def _top_n_partition(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_n`` by ``argpartition`` over every column (narrow rows, and the reference in tests)."""
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


def seen_positions(rows: sp.csr_matrix, position: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(row, column)`` of every bought item of ``rows`` whose ``position[item]`` is in ``[0, width)``:
    where each user's purchases fall in a score matrix whose columns are a subset of the items."""
    col = position[rows.indices]
    keep = (col >= 0) & (col < width)
    row = np.repeat(np.arange(rows.shape[0]), np.diff(rows.indptr))
    return row[keep], col[keep]


def mask_seen_at(scores: np.ndarray, rows: sp.csr_matrix, columns: np.ndarray) -> None:
    """Like :func:`mask_seen` for ``scores[:, j]`` scoring item ``columns[j]`` (``rows``: one history row
    per score row)."""
    position = np.full(rows.shape[1], -1, dtype=np.int64)
    position[columns] = np.arange(columns.size)
    r, c = seen_positions(rows, position, columns.size)
    scores[r, c] = -np.inf


def masked_top_n(
    scores: np.ndarray,
    history: sp.csr_matrix,
    users: np.ndarray,
    n: int,
    *,
    allowed: np.ndarray,
    exclude_bought: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """``top_n`` of dense scores after the rules: bought items (when ``exclude_bought``) and items not
    ``allowed`` set to -inf (in place)."""
    if exclude_bought:
        mask_seen(scores, history, users)
    scores[:, ~allowed] = -np.inf
    return top_n(scores, n)


def recommend(
    model: Model, data: Interactions, users: np.ndarray, n: int, *, exclude_bought: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Batched top-n for known users (matrix indices): ``(item indices, scores)``, each (len(users), n)."""
    scores = model.score(data, users)
    if exclude_bought:
        mask_seen(scores, data.counts, users)
    return top_n(scores, n)


def sparse_z_at(rows: sp.spmatrix, r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``standardize(rows.toarray())[r, c]`` without the dense array: each row's mean and standard deviation
    over every column (absent entries count as zeros), in float64, and the z-scores looked up at (r, c).
    Rows over a quarter full (small catalogues) take the dense pass instead, which is faster there."""
    rows = sp.csr_matrix(rows)
    n_rows, n_cols = rows.shape
    if rows.nnz * 4 > n_rows * n_cols:
        return np.asarray(standardize(rows.toarray())[r, c], dtype=np.float32)
    rows.sum_duplicates()
    rows.sort_indices()
    per_row = np.diff(rows.indptr)
    row_of = np.repeat(np.arange(n_rows, dtype=np.int64), per_row)
    x = rows.data.astype(np.float64)
    mean = np.bincount(row_of, weights=x, minlength=n_rows) / max(n_cols, 1)
    dev = x - mean[row_of]
    var = (np.bincount(row_of, weights=dev * dev, minlength=n_rows) + (n_cols - per_row) * mean**2) / max(
        n_cols, 1
    )
    std = np.sqrt(var)
    std = np.where(std > 0, std, 1.0)
    keys = row_of * n_cols + rows.indices
    query = np.asarray(r, dtype=np.int64) * n_cols + c
    val = np.zeros(query.size)
    if keys.size:
        pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
        val = np.where(keys[pos] == query, x[pos], 0.0)
    return np.asarray((val - mean[r]) / std[r], dtype=np.float32)


def row_moments(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's mean and standard deviation (float64; 1 for rows with no spread, as ``standardize``):
    ``(scores - mean[:, None]) / std[:, None]`` is ``standardize(scores)`` to float tolerance."""
    n = max(scores.shape[1], 1)
    mean = scores.sum(axis=1, dtype=np.float64) / n
    std = np.sqrt(np.maximum(np.einsum("ij,ij->i", scores, scores, dtype=np.float64) / n - mean * mean, 0.0))
    return mean, np.where(std > 1e-6 * np.abs(mean), std, 1.0)


def standardize(scores: np.ndarray) -> np.ndarray:
    """Per-row z-scores (rows with no spread become zeros): puts models on one scale for blending."""
    # float32 work arrays, float64 accumulation: half the memory traffic of the float64 version
    out = np.asarray(scores, dtype=np.float32).copy()
    mean = out.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    out -= mean
    std = np.sqrt(np.einsum("ij,ij->i", out, out, dtype=np.float64) / max(out.shape[1], 1)).astype(np.float32)
    out /= np.where(std > 0, std, np.float32(1.0))[:, None]
    return out


class SameForEveryone:
    """Base of the models whose score is one row of ``item_scores``, the same for every customer
    (popularity, trend): scoring, similarity (the row again) and the ``.npz`` state."""

    params: dict[str, Any]
    item_scores: np.ndarray

    def __init__(self, **params: Any) -> None:  # subclasses take their own keyword parameters
        raise NotImplementedError

    def score(self, data: Interactions, users: np.ndarray) -> np.ndarray:
        return np.tile(self.item_scores, (len(users), 1))

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        return np.tile(self.item_scores, (len(items), 1))

    def state(self) -> dict[str, np.ndarray]:
        return {"item_scores": self.item_scores}

    @classmethod
    def from_state(cls, params: dict[str, Any], state: dict[str, np.ndarray]) -> Self:
        model = cls(**params)
        model.item_scores = state["item_scores"].astype(np.float32)
        return model
