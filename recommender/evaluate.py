"""Temporal holdout: train before a cutoff, test on the following window, every model beside the baselines.

Three protocols:

- ``discover`` — relevant = products the customer bought in the test window and never before the cutoff;
  products already bought are filtered from the recommendations.
- ``repeat`` — relevant = everything bought in the test window; nothing is filtered.
- ``next_basket`` — relevant = the products of the customer's first order in the test window only (the
  next-basket protocol of the basket literature); nothing is filtered.

Test customers are those known at the cutoff with at least one relevant product known at the cutoff.
Besides the metrics, every model gets its paired difference in nDCG@10 against the strongest baseline of
the protocol (the mean over test customers of ``ndcg(model) - ndcg(baseline)`` and its standard error).
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
from recommender.interactions import Interactions, build_interactions, seconds
from recommender.metrics import ranking_metrics, user_ndcg
from recommender.models import make_model
from recommender.models.base import Model, discover_scores, mask_seen, top_n

PROTOCOLS = ("discover", "repeat", "next_basket")
#: the models `retain evaluate` compares, baselines first (``shipped`` is added by the caller)
DEFAULT_MODELS: dict[str, tuple[str, dict[str, Any]]] = {
    "popular (all time)": ("popular", {"window_days": 0}),
    "popular (30 days)": ("popular", {"window_days": 30}),
    "popular (7 days)": ("popular", {"window_days": 7}),
    "personal": ("personal", {}),
    "buy_again": ("buy_again", {}),
    "itemknn": ("itemknn", {}),
    "als": ("als", {}),
    "ease": ("ease", {}),
    "tifuknn": ("tifuknn", {}),
    "trend": ("trend", {}),
    "blend": ("blend", {}),
}
BASELINES = ("popular (all time)", "popular (30 days)", "popular (7 days)", "personal")
#: the protocols a model's ranking is filtered by the customer's purchases in
FILTERED = ("discover",)
BATCH = 2048


class PurchaseLike(Protocol):
    """Parallel purchase columns (``campaigns`` passes its ``PurchaseColumns``)."""

    @property
    def customer_id(self) -> np.ndarray: ...
    @property
    def product_id(self) -> np.ndarray: ...
    @property
    def order_id(self) -> np.ndarray: ...
    @property
    def ordered_at(self) -> np.ndarray: ...
    @property
    def quantity(self) -> np.ndarray: ...


@dataclass
class Split:
    train: Interactions
    truth: dict[str, sp.csr_matrix]  # protocol -> customers x items (train index space)
    cutoff: np.datetime64
    end: np.datetime64


def to_datetime64(value: datetime | np.datetime64 | str) -> np.datetime64:
    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.replace(tzinfo=None) - (value.utcoffset() or value - value)
    return seconds(value)


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
    return Split(
        train,
        {"repeat": test, "discover": new, "next_basket": _next_basket(purchases, during & (q > 0), train)},
        start,
        end,
    )


def _next_basket(purchases: PurchaseLike, during: np.ndarray, train: Interactions) -> sp.csr_matrix:
    """Customers x products: the products of each known customer's first order in the test window."""
    cust = np.asarray(purchases.customer_id)[during]
    prod = np.asarray(purchases.product_id)[during]
    order = np.asarray(purchases.order_id)[during]
    when = np.asarray(purchases.ordered_at).astype("datetime64[s]")[during].astype(np.int64)
    u, i = train.users.index(cust), train.items.index(prod)
    # each customer's first (time, order id) among the window's lines
    key = np.lexsort((order, when, cust))
    first_of = np.ones(key.size, dtype=bool)
    first_of[1:] = cust[key][1:] != cust[key][:-1]
    first_order = dict(zip(cust[key][first_of].tolist(), order[key][first_of].tolist(), strict=True))
    wanted = np.fromiter((first_order[c] for c in cust.tolist()), dtype=np.int64, count=cust.size)
    keep = (order == wanted) & (u >= 0) & (i >= 0)
    out = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (u[keep], i[keep])), shape=train.shape)
    out.sum_duplicates()
    out.data[:] = 1.0
    return out


def model_recs(
    model: Model, data: Interactions, users: np.ndarray, *, exclude_bought: bool, k: int = 10
) -> np.ndarray:
    """Top-``k`` item indices per user (-1 for empty slots), as the protocols rank them."""
    recs = np.full((users.size, k), -1, dtype=np.int64)
    for start in range(0, users.size, BATCH):
        batch = users[start : start + BATCH]
        scores = discover_scores(model, data, batch) if exclude_bought else model.score(data, batch)
        if exclude_bought:
            mask_seen(scores, data.counts, batch)
        idx, vals = top_n(scores, k)
        recs[start : start + batch.size, : idx.shape[1]] = np.where(np.isfinite(vals), idx, -1)
    return recs


def evaluate_model(
    model: Model, data: Interactions, truth: sp.csr_matrix, *, exclude_bought: bool, k: int = 10
) -> dict[str, float]:
    """Metrics of one fitted model on the customers with a non-empty ``truth`` row."""
    users = np.flatnonzero(np.diff(truth.indptr) > 0)
    recs = model_recs(model, data, users, exclude_bought=exclude_bought, k=k)
    return ranking_metrics(recs, truth[users], data.shape[1], k)


def paired(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean of ``a - b`` over paired test customers and its standard error."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("nan")
    return {"diff": float(diff.mean()) if diff.size else 0.0, "se": se}


def evaluate(
    purchases: PurchaseLike,
    cutoff: datetime | np.datetime64 | str,
    holdout_days: int = 30,
    *,
    models: dict[str, tuple[str, dict[str, Any]]] | None = None,
    half_life_days: float | None = 60.0,
    k: int = 10,
    progress: Any = None,
) -> dict[str, Any]:
    """Fit every model on the training part and score every protocol.

    ``models`` maps a display name to ``(alias, params)``; by default :data:`DEFAULT_MODELS` with their
    defaults. Returns ``{"protocols": {protocol: {name: metrics}}, "customers": {protocol: n},
    "paired": {protocol: {"baseline": name, name: {"diff", "se"}}}, "cutoff", "end", ...}``.
    """
    split = temporal_split(purchases, cutoff, holdout_days, half_life_days=half_life_days)
    chosen = models or DEFAULT_MODELS
    table: dict[str, dict[str, dict[str, float]]] = {p: {} for p in PROTOCOLS}
    per_user: dict[str, dict[str, np.ndarray]] = {p: {} for p in PROTOCOLS}
    users = {p: np.flatnonzero(np.diff(split.truth[p].indptr) > 0) for p in PROTOCOLS}
    n_items = split.train.shape[1]
    for name, (alias, params) in chosen.items():
        model = make_model(alias, copy.deepcopy(params))
        model.fit(split.train)
        for protocol in PROTOCOLS:
            truth = split.truth[protocol][users[protocol]]
            recs = model_recs(model, split.train, users[protocol], exclude_bought=protocol in FILTERED, k=k)
            table[protocol][name] = ranking_metrics(recs, truth, n_items, k)
            per_user[protocol][name] = user_ndcg(recs, truth, k)
        if progress:
            progress(f"evaluated {name}")
    comparisons: dict[str, dict[str, Any]] = {}
    for protocol in PROTOCOLS:
        bases = [b for b in BASELINES if b in table[protocol]]
        if not bases:
            continue
        strongest = max(bases, key=lambda b: table[protocol][b]["ndcg@10"])
        comparisons[protocol] = {"baseline": strongest}
        for name in table[protocol]:
            comparisons[protocol][name] = paired(per_user[protocol][name], per_user[protocol][strongest])
    return {
        "protocols": table,
        "customers": {p: int(users[p].size) for p in PROTOCOLS},
        "paired": comparisons,
        "cutoff": str(split.cutoff),
        "end": str(split.end),
        "half_life_days": half_life_days,
    }
