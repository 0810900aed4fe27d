"""Large-catalogue scoring: candidate generation must agree with the exact (dense) computation.

The candidate path (``BlendModel.discover_top`` above ``DENSE_ITEMS`` products) blends only ALS's top-k
and the most popular products, using per-user z-score statistics computed without scoring every product;
the vectorised ``because`` and popular block replace dense versions. Each is checked here against the
dense computation on a small Zipf-like shop.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from recommender import RetainRecommender, Rules, build_interactions
from recommender.models.base import standardize, top_n
from recommender.models.blend import BlendModel
from recommender.rules import pick_rows

SMALL = {"als": {"factors": 16, "iterations": 8, "regularization": 1.0}, "knn_weight": 0.3}


def zipf_shop(users: int = 600, items: int = 400, lines: int = 12_000, seed: int = 3):
    rng = np.random.default_rng(seed)
    w = 1.0 / np.arange(1, items + 1) ** 1.1
    item = rng.permutation(items)[rng.choice(items, lines, p=w / w.sum())]
    user = rng.integers(0, users, lines)
    when = np.datetime64("2024-01-01") + rng.integers(0, 300 * 86400, lines).astype("timedelta64[s]")
    return build_interactions(user, item + 10_000, user * 16 + rng.integers(0, 4, lines), when)


@pytest.fixture(scope="module")
def fitted():
    data = zipf_shop()
    model = BlendModel(**SMALL)
    model.fit(data)
    return data, model


def test_candidates_covering_the_catalogue_equal_the_exact_ranking(fitted) -> None:
    data, model = fitted
    users = np.arange(data.shape[0])
    allowed = np.ones(data.shape[1], dtype=bool)
    allowed[::7] = False
    exact_idx, exact_vals = model.discover_top(data, users, 10, allowed=allowed, candidates=0)
    cand_idx, cand_vals = model.discover_top(data, users, 10, allowed=allowed, candidates=data.shape[1])
    # same scores (moments from the Gram matrix vs the dense rows) and so the same products
    np.testing.assert_allclose(cand_vals, exact_vals, rtol=1e-3, atol=1e-3)
    assert np.mean(cand_idx == exact_idx) > 0.99  # only near-ties may swap
    seen = data.counts[users].toarray() > 0
    assert not seen[np.arange(users.size)[:, None], cand_idx].any()  # bought products filtered
    assert allowed[cand_idx].all()


def test_small_candidate_lists_keep_nearly_every_top_product(fitted) -> None:
    data, model = fitted
    users = np.arange(data.shape[0])
    allowed = np.ones(data.shape[1], dtype=bool)
    exact, _ = model.discover_top(data, users, 10, allowed=allowed, candidates=0)
    approx, _ = model.discover_top(data, users, 10, allowed=allowed, candidates=50)
    overlap = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert overlap > 0.9
    assert len({tuple(r) for r in approx}) > 1  # personal, not one list for everybody


def test_knn_z_scores_at_items_match_standardised_dense_scores(fitted) -> None:
    data, model = fitted
    users = np.arange(0, data.shape[0], 5)
    items = np.random.default_rng(0).integers(0, data.shape[1], (users.size, 30))
    dense = standardize(model.itemknn.score(data, users))
    got = model.itemknn.z_scores_at(data, users, items)
    np.testing.assert_allclose(got, np.take_along_axis(dense, items, axis=1), rtol=1e-4, atol=1e-4)


def test_because_is_the_biggest_contributor(fitted) -> None:
    data, model = fitted
    rng = np.random.default_rng(1)
    users = rng.integers(0, data.shape[0], 300)
    items = rng.integers(0, data.shape[1], 300)
    got = model.itemknn.because(data, users, items)
    sim = model.itemknn.similarity.toarray()
    weights = data.weights.toarray()
    for u, i, g in zip(users, items, got, strict=True):
        contrib = weights[u] * sim[:, i]
        if contrib.max() <= 0:
            assert g == -1
        else:
            assert contrib[g] == pytest.approx(contrib.max())


def test_popular_block_equals_the_dense_masked_ranking(fitted) -> None:
    data, model = fitted
    rec = RetainRecommender(data, model)
    users = np.arange(data.shape[0])
    allowed = np.ones(data.shape[1], dtype=bool)
    allowed[:50] = False
    idx, vals = rec._popular_top(users, allowed, 6, exclude_bought=True)
    dense = np.tile(model.popular.item_scores, (users.size, 1)).astype(np.float32)
    dense[data.counts[users].toarray() > 0] = -np.inf
    dense[:, ~allowed] = -np.inf
    want_idx, want_vals = top_n(dense, 6)
    np.testing.assert_array_equal(vals, want_vals)
    finite = np.isfinite(want_vals)
    assert (idx[finite] == want_idx[finite]).mean() > 0.99  # equal popularity may swap


def test_recommend_through_candidates_fills_blocks_with_reasons(monkeypatch) -> None:
    import recommender.models.blend as blend_module

    monkeypatch.setattr(blend_module, "DENSE_ITEMS", 1_000)
    monkeypatch.setattr(blend_module, "HEAD", 256)  # and the norm-pruning rounds
    data = zipf_shop(users=300, items=1_500, lines=9_000)
    rec = RetainRecommender.fit(data, model="blend", params=SMALL)
    assert data.shape[1] > blend_module.DENSE_ITEMS  # the candidate path
    recs = rec.recommend(data.users.values[:50], n=4, rules=Rules())
    for r in recs:
        discover = r.block("discover")
        assert discover is not None and len(discover.items) == 4
        bought = set(data.items.values[data.counts[data.users.index(np.array([r.customer_id]))[0]].indices])
        assert not {it.product_id for it in discover.items} & bought
    assert any(it.because_product_id for r in recs for it in r.block("discover").items)
    monkeypatch.setattr(blend_module, "DENSE_ITEMS", 10**9)  # the same customers, every product scored
    dense = rec.recommend(data.users.values[:50], n=4, rules=Rules())
    same = [
        {it.product_id for it in a.block("discover").items}
        == {it.product_id for it in b.block("discover").items}
        for a, b in zip(recs, dense, strict=True)
    ]
    assert np.mean(same) >= 0.9
    reasons = [it.reason or "" for r in recs for it in r.block("buy_again").items]
    assert reasons and all(re.fullmatch(r"You bought this (\d+ times|before)", x) for x in reasons)


@pytest.mark.parametrize("head", [16, 64, 10_000])
def test_norm_pruned_als_topk_equals_implicit_topk(fitted, monkeypatch, head: int) -> None:
    """The pruning bound may only skip items that cannot make the top-k: same result as implicit's topk
    over every item, with the same bought and banned filters."""
    from implicit.cpu.topk import topk

    import recommender.models.blend as blend_module

    data, model = fitted
    monkeypatch.setattr(blend_module, "HEAD", head)
    users = np.arange(data.shape[0])
    banned = np.zeros(data.shape[1], dtype=bool)
    banned[::5] = True
    seen = data.counts[users]
    got_idx, got_raw = model._als_topk(model.als.user_factors[users], 20, seen, banned)
    want_idx, want_raw = topk(
        model.als.item_factors,
        model.als.user_factors[users],
        20,
        filter_query_items=seen,
        filter_items=np.flatnonzero(banned).astype(np.int32),
        num_threads=1,
    )
    np.testing.assert_allclose(got_raw, want_raw, rtol=1e-5, atol=1e-5)
    assert np.mean(got_idx == want_idx) > 0.99  # equal scores may swap


@pytest.mark.parametrize("n", [1, 4, 10])
def test_thresholded_top_n_equals_argpartition(n: int) -> None:
    from recommender.models.base import _top_n_partition

    def reference(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Full sort by (score desc, column asc): the documented order, ties included."""
        cols = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
        order = np.lexsort((cols, -scores), axis=1)[:, :n]
        return order, np.take_along_axis(scores, order, axis=1)

    rng = np.random.default_rng(n)
    scores = rng.normal(size=(300, 2_000)).astype(np.float32)
    scores[:, rng.integers(0, 2_000, 600)] = -np.inf  # filtered columns
    scores[5] = -np.inf  # a row with nothing left
    scores[6, 100:] = -np.inf  # fewer finite columns than the sample needs
    scores[7] = np.round(scores[7])  # many ties: the lower column wins
    want_idx, want_vals = reference(scores, n)
    got_idx, got_vals = top_n(scores, n)
    np.testing.assert_array_equal(got_vals, want_vals)
    finite = np.isfinite(want_vals)
    np.testing.assert_array_equal(got_idx[finite], want_idx[finite])
    # argpartition (narrow rows) agrees on the scores; which of several tied columns it keeps may differ
    np.testing.assert_array_equal(_top_n_partition(scores, n)[1], want_vals)


def _walk(candidates, scores, n, categories, cap) -> list[int]:
    """The cap the obvious way: walk the ranked row, skip a candidate whose category is full."""
    taken: list[int] = []
    per: dict[str, int] = {}
    for j in range(candidates.size):
        if len(taken) == n or not np.isfinite(scores[j]):
            break
        cat = categories[candidates[j]]
        if cat and per.get(cat, 0) >= cap:
            continue
        per[cat] = per.get(cat, 0) + 1
        taken.append(j)
    return taken


@pytest.mark.parametrize("cap", [1, 2])
def test_pick_rows_equals_walking_each_row(cap: int) -> None:
    rng = np.random.default_rng(cap)
    items, rows, k, n = 60, 300, 24, 5
    categories = np.array(["", "mugs", "tea", "cards", "bags"], dtype=object)[rng.integers(0, 5, items)]
    codes = np.array([{"": -1, "mugs": 0, "tea": 1, "cards": 2, "bags": 3}[c] for c in categories])
    candidates = np.stack([rng.permutation(items)[:k] for _ in range(rows)])
    scores = -np.sort(rng.random((rows, k)), axis=1).astype(np.float32)  # best first
    ends = rng.integers(0, k + 1, rows)  # short rows: -inf from here on
    scores[np.arange(k)[None, :] >= ends[:, None]] = -np.inf
    got = pick_rows(candidates, scores, n, codes, cap)
    for j in range(rows):
        want = _walk(candidates[j], scores[j], n, categories, cap)
        assert got[j].tolist() == want + [-1] * (n - len(want))
    assert (got >= 0).sum() > rows  # the rows are not trivially empty


def test_threaded_batches_equal_one_batch(monkeypatch) -> None:
    data = zipf_shop(users=900)
    rec = RetainRecommender.fit(data, model="blend", params=SMALL)
    ids = data.users.values
    monkeypatch.setattr("recommender.service.BATCH", 128)  # 8 batches on 2 threads
    monkeypatch.setattr("recommender.service.THREADS", 2)
    threaded = rec.recommend(ids, n=4, rules=Rules(max_per_category=1))
    monkeypatch.setattr("recommender.service.BATCH", ids.size)  # one batch, so no threads
    serial = rec.recommend(ids, n=4, rules=Rules(max_per_category=1))
    assert threaded == serial
    assert sum(len(b.items) for r in serial for b in r.blocks) > ids.size
