"""Recommender package: id maps, a contract suite over every model on a checkerboard, rules, files, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recommender import (
    Catalog,
    IdMap,
    InteractionError,
    ModelFileError,
    ModelFileMissing,
    RecommenderError,
    RetainRecommender,
    Rules,
    build_interactions,
)
from recommender.interactions import interactions_from_weights
from recommender.models import make_model, recommend
from recommender.models.base import top_n

N = 20  # users and items of the checkerboard
SMALL_ALS = {"factors": 2, "regularization": 1.0, "alpha": 5.0, "iterations": 20}  # the board has rank 2


def checkerboard():
    """Customer c (ids 100+) bought product p (ids 1000+) iff c and p have the same parity, except p == c.

    The right answer for a new product: the one same-parity product the customer has not bought.
    """
    cust, prod = [], []
    for u in range(N):
        for i in range(N):
            if (u + i) % 2 == 0 and u != i:
                cust.append(100 + u)
                prod.append(1000 + i)
    return interactions_from_weights(np.array(cust), np.array(prod), np.ones(len(cust)))


PERSONALISED = {
    "als": SMALL_ALS,
    "itemknn": {"K": 50, "similarity": "cosine"},
    "blend": {"als": SMALL_ALS, "popular_weight": 0.0, "knn_weight": 0.5},
}


@pytest.mark.parametrize("name", sorted(PERSONALISED))
def test_contract_checkerboard_recommends_the_missing_same_parity_item(name: str) -> None:
    data = checkerboard()
    model = make_model(name, PERSONALISED[name])
    model.fit(data)
    users = np.arange(N)
    idx, scores = recommend(model, data, users, 1, exclude_bought=True)
    assert list(idx[:, 0]) == list(users)  # item index u is product 1000+u
    # unfiltered: the top half of every ranking has the customer's parity
    idx, _ = recommend(model, data, users, N // 2, exclude_bought=False)
    assert np.all(idx % 2 == users[:, None] % 2)
    # deterministic: a second fit gives the same scores
    again = make_model(name, PERSONALISED[name])
    again.fit(data)
    np.testing.assert_allclose(again.score(data, users), model.score(data, users), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(PERSONALISED))
def test_contract_similar_items_share_parity(name: str) -> None:
    data = checkerboard()
    model = make_model(name, PERSONALISED[name])
    model.fit(data)
    sims = model.item_similarity(np.array([2, 3]))
    sims[0, 2] = sims[1, 3] = -np.inf
    idx, _ = top_n(sims, 4)
    assert np.all(idx[0] % 2 == 0) and np.all(idx[1] % 2 == 1)


def test_popular_and_personal_known_answers() -> None:
    # customer 1 bought product 10 three times, 11 once; customer 2 bought 11 and 12
    when = np.array(
        ["2024-01-01", "2024-01-05", "2024-01-09", "2024-01-09", "2024-01-02", "2024-01-03"], "datetime64[s]"
    )
    data = build_interactions(
        np.array([1, 1, 1, 1, 2, 2]), np.array([10, 10, 10, 11, 11, 12]), np.array([1, 2, 3, 3, 4, 5]), when
    )
    pop = make_model("popular", {"window_days": 0})
    pop.fit(data)
    assert list(data.items.ids(top_n(pop.score(data, np.array([0])), 3)[0][0])) == [11, 10, 12]
    personal = make_model("personal")
    personal.fit(data)
    assert list(data.items.ids(top_n(personal.score(data, np.array([0, 1])), 3)[0][0])) == [10, 11, 12]
    assert data.counts[0, 0] == 3  # three orders hold (1, 10)


def test_id_map_round_trip_and_unknown_ids() -> None:
    m = IdMap.from_ids(np.array([42, 7, 7, 1000]))
    assert list(m.values) == [7, 42, 1000]
    assert list(m.index([1000, 7, 5, 43, 2000])) == [2, 0, -1, -1, -1]
    assert list(m.ids(m.index([42, 1000]))) == [42, 1000]
    assert list(IdMap.from_ids(np.array([], dtype=np.int64)).index([1])) == [-1]


def test_recency_half_life_halves_the_weight() -> None:
    when = np.array(["2024-01-01", "2024-03-01"], "datetime64[s]")
    plain = build_interactions(np.array([1, 2]), np.array([5, 5]), np.array([1, 2]), when)
    decayed = build_interactions(
        np.array([1, 2]), np.array([5, 5]), np.array([1, 2]), when, half_life_days=60
    )
    assert plain.weights[0, 0] == pytest.approx(np.log1p(1))
    assert decayed.weights[0, 0] == pytest.approx(np.log1p(1) * 0.5, rel=1e-3)  # 60 days older
    assert decayed.weights[1, 0] == pytest.approx(np.log1p(1))


@pytest.fixture(scope="module")
def service() -> RetainRecommender:
    rec = RetainRecommender.fit(checkerboard(), model="blend", params={"als": SMALL_ALS, "knn_weight": 0.5})
    ids = 1000 + np.arange(N)
    return rec.with_catalog(
        Catalog(
            ids,
            price=[float(i) if i != 4 else None for i in range(N)],
            category=[None if i == 6 else f"cat{i % 4}" for i in range(N)],
            in_stock=[i != 8 for i in range(N)],
            name=[f"Product {i}" for i in range(N)],
        )
    )


def test_service_blocks_reasons_and_unknown_customer(service: RetainRecommender) -> None:
    recs = service.recommend([102, 999, 103], n=3)
    assert [r.customer_id for r in recs] == [102, 999, 103]
    discover = recs[0].block("discover")
    assert discover is not None and discover.fallback is None
    assert discover.items[0].product_id == 1002
    assert discover.items[0].reason.startswith("Because you bought Product ")
    assert discover.items[0].because_product_id % 2 == 0
    buy_again = recs[0].block("buy_again")
    assert buy_again is not None and all(
        it.product_id % 2 == 0 and it.product_id != 1002 for it in buy_again.items
    )
    assert recs[1].blocks[0].name == "popular" and "unknown" in (recs[1].blocks[0].fallback or "")
    assert len(recs[1].blocks[0].items) == 3


def test_rules_filter_candidates(service: RetainRecommender) -> None:
    rules = Rules(
        exclude_bought=False, exclude_product_ids=frozenset({1000}), max_per_category=1, max_price=15.0
    )
    items = service.recommend([100], blocks=("discover",), n=4, rules=rules)[0].blocks[0].items
    ids = [it.product_id for it in items]
    assert 1000 not in ids and 1008 not in ids  # excluded, out of stock
    assert 1004 not in ids  # unknown price never satisfies a price bound
    assert all(pid - 1000 <= 15 for pid in ids)
    cats = [f"cat{(pid - 1000) % 4}" for pid in ids if pid != 1006]
    assert len(cats) == len(set(cats))  # at most one per category; 1006 has none and is not counted
    only = Rules(only_categories=frozenset({"cat1"}), exclude_bought=False)
    got = service.recommend([101], blocks=("discover",), n=3, rules=only)[0].blocks[0].items
    assert got and all((it.product_id - 1000) % 4 == 1 for it in got)
    excl = Rules(exclude_categories=frozenset({"cat0", "cat2"}), exclude_bought=False)
    got = service.recommend([100], blocks=("discover",), n=3, rules=excl)[0].blocks[0].items
    assert all((it.product_id - 1000) % 4 in (1, 3) or it.product_id == 1006 for it in got)


def test_rules_leaving_nothing_state_the_fallback(service: RetainRecommender) -> None:
    rules = Rules(min_price=1000.0)
    rec = service.recommend([100], n=2, rules=rules)[0]
    assert rec.block("buy_again").items == () and rec.block("buy_again").fallback
    assert rec.block("discover").items == () and "no product passes" in rec.block("discover").fallback


def test_similar_items_and_unknown_products(service: RetainRecommender) -> None:
    block = service.similar_items([1002, 1004], n=3)
    assert block.name == "similar" and len(block.items) == 3
    assert all(it.product_id % 2 == 0 and it.product_id not in (1002, 1004) for it in block.items)
    assert block.items[0].reason.startswith("Often bought with Product ")
    unknown = service.similar_items([55555], n=2)
    assert len(unknown.items) == 2 and "unknown" in (unknown.fallback or "")


def test_save_load_round_trip(service: RetainRecommender, tmp_path: Path) -> None:
    service.metadata["data_fingerprint"] = "abc"
    service.save(tmp_path / "model")
    loaded = RetainRecommender.load(tmp_path / "model").with_catalog(service.catalog)
    assert loaded.metadata["data_fingerprint"] == "abc"
    assert loaded.recommend([100, 105, 999]) == service.recommend([100, 105, 999])
    assert loaded.similar_items([1002]) == service.similar_items([1002])


def test_corrupt_and_missing_model_files(service: RetainRecommender, tmp_path: Path) -> None:
    with pytest.raises(ModelFileMissing, match="no model at"):
        RetainRecommender.load(tmp_path / "absent")
    service.save(tmp_path / "m")
    (tmp_path / "m.npz").write_bytes(b"not a zip file")
    with pytest.raises(ModelFileError, match="corrupt"):
        RetainRecommender.load(tmp_path / "m")
    service.save(tmp_path / "m")
    # the metadata the model loads with is the copy inside the .npz (recommender/storage.py)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(bytes(arrays["__metadata__"]).decode())
    meta["version"] = 99
    arrays["__metadata__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(ModelFileError, match="version"):
        RetainRecommender.load(tmp_path / "m")
    arrays["__metadata__"] = np.frombuffer(b"{", dtype=np.uint8)
    np.savez(tmp_path / "m.npz", **arrays)
    with pytest.raises(ModelFileError, match="metadata is corrupt"):
        RetainRecommender.load(tmp_path / "m")
    # a model saved before the manifest (arrays only) reads its .json
    del arrays["__metadata__"]
    np.savez(tmp_path / "m.npz", **arrays)
    (tmp_path / "m.json").write_text("{")
    with pytest.raises(ModelFileError, match="metadata is corrupt"):
        RetainRecommender.load(tmp_path / "m")


def test_bad_input_is_a_clear_error() -> None:
    empty = np.array([], dtype=np.int64)
    with pytest.raises(InteractionError, match="empty history"):
        build_interactions(empty, empty, empty, np.array([], "datetime64[s]"))
    with pytest.raises(InteractionError, match="NaN or infinite"):
        interactions_from_weights(np.array([1, 2]), np.array([3, 4]), np.array([1.0, np.nan]))
    with pytest.raises(InteractionError, match="NaN or infinite"):
        interactions_from_weights(np.array([1]), np.array([3]), np.array([np.inf]))
    when = np.array(["2024-01-01"], "datetime64[s]")
    with pytest.raises(InteractionError, match="quantity"):
        build_interactions(np.array([1]), np.array([2]), np.array([3]), when, quantity=np.array([np.nan]))
    # a customer whose only lines are returns (negative quantities) leaves nothing to learn from
    with pytest.raises(InteractionError, match="empty history"):
        build_interactions(np.array([1]), np.array([2]), np.array([3]), when, quantity=np.array([-2.0]))
    with pytest.raises(InteractionError, match="different lengths"):
        build_interactions(np.array([1, 2]), np.array([2]), np.array([3]), when)
    with pytest.raises(RecommenderError, match="unknown model"):
        make_model("magic")
    with pytest.raises(RecommenderError, match="unknown ALS parameter"):
        make_model("als", {"factorz": 3})


def test_service_rejects_unknown_blocks(service: RetainRecommender) -> None:
    with pytest.raises(RecommenderError, match="unknown block"):
        service.recommend([100], blocks=("nope",))


@pytest.mark.parametrize(
    "ids",
    [
        np.array([5, 3, 3, 9, 0, 5]),  # small database keys: the presence table
        np.array([10**12, 7, -4, 7, 10**12]),  # large or negative ids: numpy's sort
        np.array([42]),
    ],
)
def test_factorize_matches_numpy_unique(ids: np.ndarray) -> None:
    from recommender.interactions import _factorize

    values, index = _factorize(ids.astype(np.int64))
    want_values, want_index = np.unique(ids, return_inverse=True)
    np.testing.assert_array_equal(values, want_values)
    np.testing.assert_array_equal(index, want_index.ravel())
