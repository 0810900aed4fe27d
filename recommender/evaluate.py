"""Temporal holdout: train before a cutoff, test on the following window, every model beside the baselines.

Two protocols:

- ``discover`` — relevant = products the customer bought in the test window and never before the cutoff;
  products already bought are filtered from the recommendations.
- ``repeat`` — relevant = everything bought in the test window; nothing is filtered.

Test customers are those known at the cutoff with at least one relevant product known at the cutoff.
Metric definitions: :mod:`recommender.metrics`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp

from recommender.errors import InteractionError
from recommender.interactions import Interactions, build_interactions
from recommender.metrics import ranking_metrics
from recommender.models import make_model
from recommender.models.base import Model, mask_seen, top_n

PROTOCOLS = ("discover", "repeat")
#: the models `retain evaluate` compares, baselines first
DEFAULT_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "popular (all time)": ("popular", {"window_days": 0}),
    "popular (30 days)": ("popular", {"window_days": 30}),
    "personal": ("personal", {}),
    "itemknn": ("itemknn", {}),
    "als": ("als", {}),
    "blend": ("blend", {}),
}
BASELINES = ("popular (all time)", "popular (30 days)", "personal")
BATCH = 2048


class PurchaseLike(Protocol):
    """Parallel purchase columns (``campaigns`` passes its ``PurchaseColumns``)."""

    customer_id: np.ndarray
    product_id: np.ndarray
    order_id: np.ndarray
    ordered_at: np.ndarray
    quantity: np.ndarray


@dataclass
class Split:
    train: Interactions
    truth: dict[str, sp.csr_matrix]  # protocol -> customers x items (train index space)
    cutoff: np.datetime64
    end: np.datetime64


def to_datetime64(value: datetime | np.datetime64 | str) -> np.datetime64:
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.replace(tzinfo=None) - (value.utcoffset() or value - value)
    return np.datetime64(value, "s")


def temporal_split(
    purchases: PurchaseLike,
    cutoff: datetime | np.datetime64 | str,
    holdout_days: int = 30,
    *,
    half_life_days: float | None = None,
) -> Split:
    """Train on lines before ``cutoff``, test on ``[cutoff, cutoff + holdout_days)``."""
    start = to_datetime64(cutoff)
    end = start + np.timedelta64(int(holdout_days), "D")
    when = np.asarray(purchases.ordered_at).astype("datetime64[s]")
    q = np.asarray(purchases.quantity, dtype=np.float64)
    before, during = when < start, (when >= start) & (when < end)
    if not before.any():
        raise InteractionError(f"no purchases before the cutoff {start}: pick a later --cutoff")
    cust, prod = np.asarray(purchases.customer_id), np.asarray(purchases.product_id)
    train = build_interactions(
        cust[before],
        prod[before],
        np.asarray(purchases.order_id)[before],
        when[before],
        quantity=q[before],
        half_life_days=half_life_days,
        as_of=start,
    )
    u, i = train.users.index(cust[during & (q > 0)]), train.items.index(prod[during & (q > 0)])
    known = (u >= 0) & (i >= 0)
    test = sp.csr_matrix((np.ones(int(known.sum()), np.float32), (u[known], i[known])), shape=train.shape)
    test.sum_duplicates()
    test.data[:] = 1.0
    seen = train.counts.copy()
    seen.data[:] = 1.0
    new = (test - test.multiply(seen)).tocsr()
    new.eliminate_zeros()
    if test.nnz == 0:
        raise InteractionError(f"no purchases by known customers of known products in {start} .. {end}")
    return Split(train, {"repeat": test, "discover": new}, start, end)


def evaluate_model(
    model: Model, data: Interactions, truth: sp.csr_matrix, *, exclude_bought: bool, k: int = 10
) -> dict[str, float]:
    """Metrics of one fitted model on the customers with a non-empty ``truth`` row."""
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    recs = np.full((users.size, k), -1, dtype=np.int64)
    for start in range(0, users.size, BATCH):
        batch = users[start : start + BATCH]
        scorer = getattr(model, "discover_score", None) if exclude_bought else None
        scores = scorer(data, batch) if scorer else model.score(data, batch)
        if exclude_bought:
            mask_seen(scores, data.counts, batch)
        idx, vals = top_n(scores, k)
        recs[start : start + batch.size, : idx.shape[1]] = np.where(np.isfinite(vals), idx, -1)
    return ranking_metrics(recs, truth[users], data.shape[1], k)


def evaluate(
    purchases: PurchaseLike,
    cutoff: datetime | np.datetime64 | str,
    holdout_days: int = 30,
    *,
    models: dict[str, tuple[str, dict[str, Any]]] | None = None,
    half_life_days: float | None = 60.0,
    k: int = 10,
) -> dict[str, Any]:
    """Fit every model on the training part and score both protocols.

    ``models`` maps a display name to ``(alias, params)``; by default :data:`DEFAULT_MODELS` with their
    defaults. Returns ``{"protocols": {protocol: {name: metrics}}, "customers": {protocol: n}, ...}``.
    """
    split = temporal_split(purchases, cutoff, holdout_days, half_life_days=half_life_days)
    chosen = models or DEFAULT_MODELS
    table: dict[str, dict[str, dict[str, float]]] = {p: {} for p in PROTOCOLS}
    for name, (alias, params) in chosen.items():
        model = make_model(alias, copy.deepcopy(params))
        model.fit(split.train)
        for protocol in PROTOCOLS:
            table[protocol][name] = evaluate_model(
                model, split.train, split.truth[protocol], exclude_bought=protocol == "discover", k=k
            )
    return {
        "protocols": table,
        "customers": {p: int((np.diff(split.truth[p].indptr) > 0).sum()) for p in PROTOCOLS},
        "cutoff": str(split.cutoff),
        "end": str(split.end),
        "half_life_days": half_life_days,
    }
