"""Ranking metrics at k for binary relevance, averaged over test customers.

For one customer with ranked list ``r`` (length k) and relevant set ``R`` (|R| > 0):

- ``p@k``   = hits / k
- ``hr@k``  = 1 if any hit else 0 (the share of customers with at least one hit)
- ``map@k`` = sum over hit positions j of (hits in r[:j] / j), divided by min(|R|, k)
- ``ndcg@k``= sum over hits of 1 / log2(j + 1), divided by the ideal DCG of min(|R|, k) hits
- ``coverage`` = distinct recommended items over all customers / catalogue size

MAP and nDCG normalise by min(|R|, k), as implicit.evaluation.ranking_metrics_at_k does; implicit's
precision also divides by min(|R|, k), ours by k (the textbook P@k).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

METRICS = ("ndcg@10", "hr@10", "p@10", "map@10", "coverage")


def ranking_metrics(recs: np.ndarray, truth: sp.csr_matrix, n_items: int, k: int = 10) -> dict[str, float]:
    """Metrics of ``recs`` (customers x k item indices, -1 = empty slot) against ``truth`` rows (same order).

    Rows of ``truth`` with no relevant item are skipped; returns zeros when no row has one.
    """
    recs = np.asarray(recs)[:, :k]
    has = np.diff(truth.indptr) > 0
    names = [m.replace("@10", f"@{k}") for m in METRICS]
    if not has.any():
        return dict.fromkeys(names, 0.0)
    recs, truth = recs[has], truth[has]
    n_rel = np.diff(truth.indptr)
    hit = _hits(recs, truth)
    discount = 1.0 / np.log2(np.arange(2, recs.shape[1] + 2))
    ideal_n = np.minimum(n_rel, k)
    idcg = np.cumsum(discount)[ideal_n - 1]
    dcg = (hit * discount).sum(axis=1)
    cum_hits = np.cumsum(hit, axis=1)
    prec_at = cum_hits / np.arange(1, recs.shape[1] + 1)
    ap = (prec_at * hit).sum(axis=1) / ideal_n
    covered = np.unique(recs[recs >= 0]).size
    values = [
        float(np.mean(dcg / idcg)),
        float(np.mean(hit.any(axis=1))),
        float(np.mean(hit.sum(axis=1) / k)),
        float(np.mean(ap)),
        covered / max(n_items, 1),
    ]
    return dict(zip(names, values, strict=True))


def user_ndcg(recs: np.ndarray, truth: sp.csr_matrix, k: int = 10) -> np.ndarray:
    """nDCG@k of each customer with a relevant item (rows of ``truth`` without one are skipped), in row
    order: the per-customer values whose mean is ``ranking_metrics(...)["ndcg@k"]``."""
    recs = np.asarray(recs)[:, :k]
    has = np.diff(truth.indptr) > 0
    recs, truth = recs[has], truth[has]
    if not recs.shape[0]:
        return np.zeros(0)
    hit = _hits(recs, truth)
    discount = 1.0 / np.log2(np.arange(2, recs.shape[1] + 2))
    idcg = np.cumsum(discount)[np.minimum(np.diff(truth.indptr), k) - 1]
    return np.asarray((hit * discount).sum(axis=1) / idcg)


def _hits(recs: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """(customers, k) booleans: whether each recommended item (-1 = empty slot) is relevant."""
    rows = np.repeat(np.arange(recs.shape[0]), recs.shape[1])
    flat = recs.ravel()
    valid = flat >= 0
    flat_hit = np.zeros(flat.shape, dtype=bool)
    flat_hit[valid] = np.asarray(truth[rows[valid], flat[valid]]).ravel() > 0
    return flat_hit.reshape(recs.shape)
