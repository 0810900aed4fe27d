"""The service's fast paths return what the straightforward computation returns, on two real shops.

The straightforward computation scores every part of the blend densely for each batch of customers,
z-scores it with ``standardize`` and sums the parts: the discover block is the top of that sum (bought
and disallowed products masked), the buy-again block orders each customer's own products by the
``repeat`` sum. The service instead shares the parts between the two blocks, reads the buy-again sum at
the own products only (sparse rows and factor moments for parts discover does not weigh), and builds
the blocks vectorised; item-kNN and EASE^R rows come from column-major products. Same products in the same order, same reasons, scores equal to float tolerance.
Online Retail (bundled) and Groceries (../shared/data/groceries, imported like a user would).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest
import scipy.sparse as sp

from bench.datasets import groceries_path
from recommender import Catalog, RetainRecommender, Rules, build_interactions
from recommender.interactions import Interactions
from recommender.models.base import masked_top_n, standardize
from recommender.models.blend import POPULAR_PARTS, WEIGHT_OF, BlendModel

#: what selection shipped on Online Retail (bench/bench_recommender.py, default budget)
SHIPPED_OR = {
    "als_weight": 0.25,
    "knn_weight": 0.5,
    "popular_weight": 2.0,
    "popular_7_weight": 0.5,
    "repeat": {"tifuknn": 0.5, "popular": 4.0, "popular_7": 1.0, "itemknn": 0.25, "als": 0.5, "own": 4.0},
}
#: repeat mixes weighing parts the discover score does not (item-kNN, TIFU-KNN, EASE^R; then ALS, with
#: TIFU-KNN and EASE^R in discover)
REPEAT_ONLY = {
    "knn_weight": 0.0,
    "repeat": {"itemknn": 0.5, "tifuknn": 1.0, "ease": 0.5, "popular_all": 1.0, "own": 2.0},
}
ALS_REPEAT_ONLY = {
    "als_weight": 0.0,
    "tifu_weight": 0.5,
    "ease_weight": 0.1,
    "repeat": {"als": 1.0, "tifuknn": -0.5, "own": 1.0},
}
#: the trend part (rising sales, issue 17's selection) in both blocks, beside ALS and popularity
TREND = {
    "trend_weight": 1.0,
    "popular_7_weight": 0.25,
    "repeat": {"trend": 0.5, "popular": 1.0, "als": 0.25, "own": 2.0},
}
FAST_ALS = {"factors": 32, "iterations": 6}


class Straightforward:
    """The blend served the straightforward way (see the module docstring); the service reaches it
    through the model protocol (``discover_top``, ``own_scores``) with the blend as support."""

    name: ClassVar[str] = "blend"

    def __init__(self, blend: BlendModel) -> None:
        self.blend = blend
        self.params = blend.params

    def _dense(self, data: Interactions, users: np.ndarray, weights: dict[str, float]) -> np.ndarray:
        out = np.zeros((len(users), data.shape[1]), dtype=np.float32)
        for part, w in weights.items():
            if not w or part == "own":
                continue
            if part in POPULAR_PARTS:
                z = standardize(np.log1p(getattr(self.blend, part).item_scores)[None, :])
            elif part == "trend":  # rising sales: one row for every customer
                z = standardize(np.tile(self.blend.trend.item_scores, (len(users), 1)))
            else:
                z = standardize(self._scores(part, data, users))
            out += np.float32(w) * z
        return out

    def _scores(self, part: str, data: Interactions, users: np.ndarray) -> np.ndarray:
        """A part's scores by its textbook formula (item-kNN and EASE^R as row-by-row products)."""
        b = self.blend
        if part == "itemknn":
            return (data.weights[users] @ b.itemknn.similarity).toarray()
        if part == "ease":
            x = (data.counts[users] > 0).astype(np.float32)
            out = np.zeros((len(users), data.shape[1]), dtype=np.float32)
            out[:, b.ease.items] = x[:, b.ease.items] @ b.ease.weights
            return out
        if part == "als":
            return b.als.user_factors[users] @ b.als.item_factors.T
        return b.tifuknn.score(data, users)

    def warm(self) -> None:
        self.blend.warm()

    def own_per_batch(self, data: Interactions) -> bool:
        return True

    def own_scores(self, data: Interactions, users: np.ndarray) -> sp.csr_matrix:
        repeat = self.params["repeat"]
        own = self.blend._own_matrix(data)[users]
        r = np.repeat(np.arange(len(users)), np.diff(own.indptr))
        values = self._dense(data, users, repeat)[r, own.indices] + np.float32(repeat["own"]) * own.data
        out = sp.csr_matrix((values.astype(np.float32), own.indices, own.indptr), shape=own.shape)
        out.data -= out.data.min(initial=0.0) - np.float32(1e-3)
        return out

    def discover_top(
        self,
        data: Interactions,
        users: np.ndarray,
        n: int,
        *,
        allowed: np.ndarray,
        exclude_bought: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        scores = self._dense(data, users, {p: self.blend.weight(p) for p in WEIGHT_OF})
        return masked_top_n(scores, data.counts, users, n, allowed=allowed, exclude_bought=exclude_bought)


def online_retail() -> tuple[Interactions, Catalog]:
    from bench.bench_recommender import load_online_retail

    cols, skus = load_online_retail()
    data = build_interactions(
        cols["customer_id"], cols["product_id"], cols["order_id"], cols["ordered_at"],
        quantity=cols["quantity"], half_life_days=60,
    )  # fmt: skip
    n = len(skus)
    catalog = Catalog(
        np.arange(n),
        price=[1.0] * n,
        category=[f"c{i % 25}" for i in range(n)],
        in_stock=[i % 10 != 0 for i in range(n)],
        name=skus,
    )
    return data, catalog


def groceries(tmp: Any) -> tuple[Interactions, Catalog]:
    src = groceries_path()
    if not src.exists():
        pytest.skip(f"the Groceries data set is not at {src} (set RETAIN_GROCERIES to its groceries.csv.gz)")
    from campaigns.cli import main
    from campaigns.store import Store
    from campaigns.training import catalog_from_products, load_training_data

    db_url = f"sqlite:///{tmp / 'groceries.db'}"
    args = ["--db", db_url, "import", "orders", str(src), "--format", "generic", "--no-header"]
    args += ["--map", "customer=1,date=2,product_name=3", "--date-format", "%d-%m-%Y"]
    assert main([*args, "--basket-by", "customer,date", "--aggregate-duplicates"]) == 0
    store = Store.open(db_url)
    cols = load_training_data(store)
    data = build_interactions(
        cols.customer_id, cols.product_id, cols.order_id, cols.ordered_at,
        quantity=cols.quantity, half_life_days=60,
    )  # fmt: skip
    return data, catalog_from_products(store.all_products())


@pytest.fixture(scope="module", params=["online-retail", "groceries"])
def shop(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Interactions, Catalog]:
    if request.param == "online-retail":
        return online_retail()
    return groceries(tmp_path_factory.mktemp("groceries"))


def assert_same(got: list[Any], want: list[Any]) -> tuple[int, int]:
    """Same blocks, products, order, reasons and sources; scores to float tolerance. Two products whose
    scores are equal to float tolerance may come in either order (a near-tie broken by rounding): from
    such a swap on, the block is not compared further (a per-category cap may then pick differently).
    Returns (items compared, blocks with a near-tie swap)."""
    assert [r.customer_id for r in got] == [r.customer_id for r in want]
    items = swaps = 0
    for g, w in zip(got, want, strict=True):
        assert [b.name for b in g.blocks] == [b.name for b in w.blocks]
        for gb, wb in zip(g.blocks, w.blocks, strict=True):
            where = (g.customer_id, gb.name)
            assert gb.fallback == wb.fallback, where
            assert len(gb.items) == len(wb.items), where
            for gi, wi in zip(gb.items, wb.items, strict=True):
                assert gi.score == pytest.approx(wi.score, rel=1e-5, abs=1e-5), where
                if gi.product_id != wi.product_id:
                    swaps += 1
                    break
                assert (gi.reason, gi.because_product_id) == (wi.reason, wi.because_product_id), where
                items += 1
    return items, swaps


@pytest.mark.parametrize(
    "params",
    [SHIPPED_OR, REPEAT_ONLY, ALS_REPEAT_ONLY, TREND],
    ids=["shipped", "repeat-only", "als", "trend"],
)
def test_recommend_all_equals_the_straightforward_computation(
    shop: tuple[Interactions, Catalog], params: dict[str, Any]
) -> None:
    data, catalog = shop
    rec = RetainRecommender.fit(data, model="blend", params={**params, "als": FAST_ALS}).with_catalog(catalog)
    blend = rec.model
    assert isinstance(blend, BlendModel)
    plain = RetainRecommender(data, Straightforward(blend), discover="blend", support=blend, catalog=catalog)
    ids = data.users.values
    for rules in (Rules(), Rules(max_per_category=1, exclude_bought=False)):
        got, want = rec.recommend(ids, n=4, rules=rules), plain.recommend(ids, n=4, rules=rules)
        items, swaps = assert_same(got, want)
        # nearly every customer has both blocks filled: the comparison covers real rankings
        assert items > 6 * len(ids)
        assert swaps <= len(ids) // 1000, swaps  # near-ties are rare
