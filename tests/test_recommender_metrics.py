"""Ranking metrics against hand-computed values and implicit.evaluation.ranking_metrics_at_k."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.metrics import ranking_metrics


def test_metrics_by_hand() -> None:
    # customer 0: relevant {1, 3}; list [1, 2, 3] -> hits at ranks 1 and 3
    # customer 1: relevant {5};    list [4, 6, 7] -> no hit
    truth = sp.csr_matrix(np.array([[0, 1, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0, 0]], dtype=np.float32))
    recs = np.array([[1, 2, 3], [4, 6, 7]])
    m = ranking_metrics(recs, truth, n_items=8, k=3)
    dcg = 1 + 1 / np.log2(4)
    idcg = 1 + 1 / np.log2(3)
    assert m["ndcg@3"] == pytest.approx((dcg / idcg) / 2)
    assert m["hr@3"] == pytest.approx(0.5)
    assert m["p@3"] == pytest.approx((2 / 3) / 2)
    assert m["map@3"] == pytest.approx(((1 + 2 / 3) / 2) / 2)
    assert m["coverage"] == pytest.approx(6 / 8)


def test_customers_without_relevant_items_are_skipped_and_empty_slots_miss() -> None:
    truth = sp.csr_matrix(np.array([[1, 0, 0], [0, 0, 0]], dtype=np.float32))
    m = ranking_metrics(np.array([[-1, 0], [1, 2]]), truth, n_items=3, k=2)
    assert m["hr@2"] == 1.0 and m["ndcg@2"] == pytest.approx(1 / np.log2(3))


def test_agrees_with_implicit_ranking_metrics() -> None:
    from implicit.evaluation import ranking_metrics_at_k
    from implicit.nearest_neighbours import CosineRecommender

    train = sp.csr_matrix(sp.random(60, 40, density=0.15, random_state=1, format="csr", dtype=np.float32))
    train.data[:] = 1
    test = sp.csr_matrix(sp.random(60, 40, density=0.08, random_state=2, format="csr", dtype=np.float32))
    test.data[:] = 1
    test = sp.csr_matrix(test - test.multiply(train))
    test.eliminate_zeros()
    model = CosineRecommender(K=10)
    with warnings.catch_warnings():
        # implicit converts its own intermediate COO matrices and warns about it
        warnings.filterwarnings("ignore", message="Method expects CSR input")
        model.fit(train, show_progress=False)
        theirs = ranking_metrics_at_k(model, train, test, K=10, show_progress=False)
    users = np.flatnonzero(np.diff(test.indptr) > 0)
    ids, _ = model.recommend(users, train[users], N=10, filter_already_liked_items=True)
    ours = ranking_metrics(ids, test[users], n_items=40, k=10)
    assert ours["ndcg@10"] == pytest.approx(theirs["ndcg"], rel=1e-5)
    assert ours["map@10"] == pytest.approx(theirs["map"], rel=1e-5)
