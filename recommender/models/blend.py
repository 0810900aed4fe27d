"""``blend``: the model behind the email blocks, a weighted sum of per-customer z-scored parts.

``discover_score`` = ``als_weight`` z(ALS) + ``knn_weight`` z(item-kNN) + ``popular_weight`` z(log recent
popularity) + ``ease_weight`` z(EASE^R) + ``tifu_weight`` z(TIFU-KNN) + ``trend_weight`` z(trend: rising
sales), z-scored per customer so the parts share one scale. ``score`` (the ``repeat`` ranking and the ``buy_again`` order) is, when ``repeat`` is
given, ``sum(repeat[part] * z(part)) + repeat["own"] * buy-again score`` — a learned mix in which
bestsellers can outrank a weak personal history; without it (``repeat=None``, the hand-set default of
earlier versions) own products come first in buy-again order plus ``repeat_mix`` times the discover score.
``retain train`` learns both weight sets per shop on validation windows (:mod:`recommender.select`).
Only the parts some weight uses are fitted (item-kNN and popularity always: they give the reasons,
``similar_items`` and the popular fallbacks).

``discover_top`` is what the emails use. Up to ``DENSE_ITEMS`` products it scores every product (exact).
Above, when the discover score is made of ALS, item-kNN and popularity only, it generates candidates
first (scoring every product for every customer does not scale: 1M customers x 50k products is 5e10
scores) — ALS's own top ``CANDIDATES`` per customer (implicit's fused matmul + top-k, bought and
disallowed products filtered inside) plus the ``CANDIDATES`` most popular allowed products — and blends
only those, with the *exact* per-customer z-score statistics of every part (ALS mean and variance over all
products from the factors' mean and Gram matrix; item-kNN from the sparse score row). A product that none
of the sources ranks high is missed: on Online Retail the candidate top-10 equals the exact top-10 for
every evaluated customer at 50+ candidates (docs/recommender.md). Small catalogues stay exact because
dense scoring is faster there (implicit's ``topk`` filters bought products in Python-level batches, which
costs more than scoring 3,659 products). Other weightings above ``DENSE_ITEMS`` are scored densely per
batch.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import scipy.sparse as sp

from recommender.interactions import Interactions
from recommender.models.als import ALSModel
from recommender.models.base import (
    mask_seen_at,
    masked_top_n,
    number,
    row_moments,
    seen_positions,
    standardize,
    top_n,
)
from recommender.models.ease import EASEModel
from recommender.models.itemknn import ItemKNNModel
from recommender.models.personal import BuyAgainModel
from recommender.models.popular import PopularModel
from recommender.models.tifuknn import TIFUKNNModel
from recommender.models.trend import TrendModel

#: chosen by `retain tune` on the validation month 2011-10-10 .. 2011-11-09 of Online Retail
DEFAULTS: dict[str, Any] = {
    "als_weight": 1.0,
    "knn_weight": 0.2,
    "popular_weight": 0.4,
    "popular_all_weight": 0.0,
    "popular_7_weight": 0.0,
    "ease_weight": 0.0,
    "tifu_weight": 0.0,
    "trend_weight": 0.0,
    "repeat_mix": 0.1,
    "repeat": None,
}
PARTS = ("als", "itemknn", "popular", "popular_all", "popular_7", "buy_again", "ease", "tifuknn", "trend")
#: the popularity parts and their fixed windows (``popular`` takes its window from its parameters)
POPULAR_PARTS = {"popular": None, "popular_all": 0.0, "popular_7": 7.0}
#: the parts whose score is one row, the same for every customer (summed once, read by column)
SAME_ROW_PARTS = (*POPULAR_PARTS, "trend")
#: the discover weight of each scoring part
WEIGHT_OF = {
    "als": "als_weight",
    "itemknn": "knn_weight",
    "popular": "popular_weight",
    "popular_all": "popular_all_weight",
    "popular_7": "popular_7_weight",
    "ease": "ease_weight",
    "tifuknn": "tifu_weight",
    "trend": "trend_weight",
}
#: what a ``repeat`` mix may weigh: the scoring parts plus ``own`` (the buy-again score)
REPEAT_KEYS = (*WEIGHT_OF, "own")
#: parts fitted whatever the weights (reasons, similar_items, popular fallbacks, buy_again)
ALWAYS = ("itemknn", "popular", "popular_all", "popular_7", "buy_again")
#: catalogues up to this size are scored exactly (every product for every customer)
DENSE_ITEMS = 8_192
#: candidates per source (ALS top-k, popular) for larger catalogues
CANDIDATES = 100
#: items (by factor norm) every customer's exact ALS top-k starts from
HEAD = 2_048
#: the largest weight accepted (z-scores times far larger weights overflow the float32 sums)
MAX_WEIGHT = 1e6


class BlendModel:
    name: ClassVar[str] = "blend"

    def __init__(self, **params: Any) -> None:
        sub = {k: dict(params.pop(k, {}) or {}) for k in PARTS}
        unknown = set(params) - set(DEFAULTS)
        if unknown:
            raise TypeError(f"unknown blend parameter(s): {', '.join(sorted(unknown))}")
        self.als = ALSModel(**sub["als"])
        self.itemknn = ItemKNNModel(**sub["itemknn"])
        self.popular = PopularModel(**sub["popular"])
        self.popular_all = PopularModel(**{"window_days": 0.0, **sub["popular_all"]})
        self.popular_7 = PopularModel(**{"window_days": 7.0, **sub["popular_7"]})
        self.buy_again = BuyAgainModel(**sub["buy_again"])
        self.ease = EASEModel(**sub["ease"])
        self.tifuknn = TIFUKNNModel(**sub["tifuknn"])
        self.trend = TrendModel(**sub["trend"])
        self.params: dict[str, Any] = {**DEFAULTS, **params}
        for key in (*WEIGHT_OF.values(), "repeat_mix"):
            self.params[key] = number(f"blend '{key}'", self.params[key], limit=MAX_WEIGHT)
        repeat = self.params["repeat"]
        if repeat is not None:
            if not isinstance(repeat, dict) or set(repeat) - set(REPEAT_KEYS):
                raise TypeError(f"blend 'repeat' must map some of {', '.join(REPEAT_KEYS)} to weights")
            self.params["repeat"] = {
                k: number(f"blend 'repeat.{k}'", v, limit=MAX_WEIGHT) for k, v in repeat.items()
            }
        self._index: _FactorIndex | None = None  # built from the ALS item factors on first use
        # per thread: the z-scored part scores of the last batch of users (discover and buy_again of one
        # batch share them)
        self._memo = threading.local()
        self._own_cache: tuple[Interactions, sp.csr_matrix] | None = None

    def full_params(self) -> dict[str, Any]:
        return {**self.params, **{k: dict(getattr(self, k).params) for k in PARTS}}

    def weight(self, part: str) -> float:
        """The discover weight of a scoring part."""
        return float(self.params[WEIGHT_OF[part]])

    def repeat_weight(self, part: str) -> float:
        repeat = self.params["repeat"]
        return float(repeat.get(part, 0.0)) if repeat is not None else 0.0

    def needed(self) -> list[str]:
        """The parts some weight uses (plus those always fitted), in fitting order."""
        return [p for p in PARTS if p in ALWAYS or self.weight(p) or self.repeat_weight(p)]

    def fit(self, data: Interactions) -> None:
        for part in self.needed():
            getattr(self, part).fit(data)
        self._index = None
        self._memo = threading.local()
        self._own_cache = None

    def warm(self) -> None:
        """Build what scoring reads lazily (before batches run on several threads)."""
        self.itemknn.warm()

    def own_per_batch(self, data: Interactions) -> bool:
        """Whether ``own_scores`` reads dense part scores (then a service computes it per batch, sharing
        them with the discover block, instead of once for every customer)."""
        return self.params["repeat"] is not None and data.shape[1] <= DENSE_ITEMS

    def _own_matrix(self, data: Interactions) -> sp.csr_matrix:
        """The buy-again score of every bought pair (CSR), computed once per data."""
        cached = getattr(self, "_own_cache", None)
        if cached is None or cached[0] is not data:
            cached = (data, data.aligned(self.buy_again.pair_scores(data)))
            self._own_cache = cached
        return cached[1]

    def _z_parts(
        self, data: Interactions, users: np.ndarray, weights: dict[str, float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``sum(w * z(part))`` less a per-customer constant, and that constant: ``(out, shift)`` with
        ``out - shift[:, None]`` the weighted sum of z-scores. Each part adds ``w / std * scores`` (no
        z-scored copy of it); the popularity parts, the same for every customer, are summed once."""
        parts = [(p, float(w)) for p, w in weights.items() if w and p != "own"]
        pop = np.zeros(data.shape[1], dtype=np.float32)
        for part, w in parts:
            if part in SAME_ROW_PARTS:
                pop += np.float32(w) * self._row_z(part)
        out = np.empty((len(users), data.shape[1]), dtype=np.float32)
        out[:] = pop
        shift = np.zeros(len(users))
        tmp = None
        for part, w in parts:
            if part not in SAME_ROW_PARTS:
                scores, mean, std = self._part(part, data, users)
                tmp = np.multiply(scores, (w / std).astype(np.float32)[:, None], out=tmp)
                out += tmp
                shift += w * mean / std
        return out, shift

    def _part(self, part: str, data: Interactions, users: np.ndarray) -> tuple[np.ndarray, ...]:
        """``part.score(data, users)`` with each row's mean and standard deviation (:func:`row_moments`),
        remembered for the last batch of this thread (discover and buy_again share them)."""
        key = (id(data), users.tobytes())
        memo = self._memo
        if getattr(memo, "key", None) != key:
            memo.key, memo.parts = key, {}
        if part not in memo.parts:
            scores = np.asarray(getattr(self, part).score(data, users), dtype=np.float32)
            memo.parts[part] = (scores, *row_moments(scores))
        return memo.parts[part]  # type: ignore[no-any-return]

    def discover_score(self, data: Interactions, users: np.ndarray) -> np.ndarray:
        out, shift = self._z_parts(data, users, {p: self.weight(p) for p in WEIGHT_OF})
        out -= shift[:, None].astype(np.float32)
        return out

    def _candidates_ok(self) -> bool:
        """Whether the candidate path gives this weighting's exact blend (ALS-led, no EASE/TIFU/trend)."""
        return bool(self.weight("als")) and not any(self.weight(p) for p in ("ease", "tifuknn", "trend"))

    def discover_top(
        self,
        data: Interactions,
        users: np.ndarray,
        n: int,
        *,
        allowed: np.ndarray,
        exclude_bought: bool = True,
        candidates: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``n`` discover products per user (indices, blended scores; -inf pads), best first.

        ``candidates``: None picks by catalogue size (exact up to ``DENSE_ITEMS`` products, else
        ``CANDIDATES`` per source); 0 forces exact scoring; k > 0 forces candidate generation with k.
        """
        if candidates is None:
            candidates = 0 if data.shape[1] <= DENSE_ITEMS or not self._candidates_ok() else CANDIDATES
        if not candidates:
            # ranked before the per-customer shift is taken off (it does not change a row's order)
            scores, shift = self._z_parts(data, users, {p: self.weight(p) for p in WEIGHT_OF})
            idx, vals = masked_top_n(
                scores, data.counts, users, n, allowed=allowed, exclude_bought=exclude_bought
            )
            return idx, (vals - shift[:, None]).astype(np.float32)
        return self._candidate_top(data, users, n, allowed, exclude_bought, max(int(candidates), n))

    def _candidate_top(
        self,
        data: Interactions,
        users: np.ndarray,
        n: int,
        allowed: np.ndarray,
        exclude_bought: bool,
        k: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        n_items = data.shape[1]
        factors = self.als.user_factors[users]
        seen = data.counts[users] if exclude_bought else None
        k = min(k, n_items)
        # ALS candidates: fused matmul + top-k; filtered products come back at -FLT_MAX
        als_idx, als_raw = self._als_topk(factors, k, seen, ~allowed)
        mean, std = self._als_moments(factors)
        dead = als_raw <= np.float32(-1e38)
        w_als = np.float32(self.weight("als"))
        z_als = w_als * (np.where(dead, np.float32(0), als_raw) - mean[:, None]) / std[:, None]
        z_als[dead] = -np.inf
        # popular candidates: the same allowed products for everyone, minus each user's own
        z_pop = self._row_z()
        pop_idx, _ = self.popular.top_allowed(allowed, k)
        extra = [p for p in ("popular_all", "popular_7") if self.weight(p)]
        for part in extra:  # those bestsellers are candidates too
            pop_idx = np.unique(np.concatenate([pop_idx, getattr(self, part).top_allowed(allowed, k)[0]]))
        z_pop_als = w_als * (factors @ self.als.item_factors[pop_idx].T - mean[:, None]) / std[:, None]
        if seen is not None:
            mask_seen_at(z_pop_als, seen, pop_idx)
        idx = np.concatenate([als_idx, np.broadcast_to(pop_idx, (users.size, pop_idx.size))], axis=1)
        score = np.concatenate([z_als, z_pop_als], axis=1)
        w_pop = float(self.params["popular_weight"])
        if w_pop:
            score += w_pop * z_pop[idx]
        for part in extra:
            score += self.weight(part) * self._row_z(part)[idx]
        w_knn = float(self.params["knn_weight"])
        if w_knn:
            score += w_knn * self.itemknn.z_scores_at(data, users, idx)
        # a product in both lists appears twice with the same score: keep one
        order = np.argsort(idx, axis=1, kind="stable")
        ordered = np.take_along_axis(idx, order, axis=1)
        dup = np.zeros(idx.shape, dtype=bool)
        dup[:, 1:] = ordered[:, 1:] == ordered[:, :-1]
        np.put_along_axis(
            score, order, np.where(dup, -np.inf, np.take_along_axis(score, order, axis=1)), axis=1
        )
        pos, vals = top_n(score.astype(np.float32), n)
        return np.take_along_axis(idx, pos, axis=1), vals

    def _als_topk(
        self, queries: np.ndarray, k: int, seen: sp.csr_matrix | None, banned: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact ALS top-k (item indices, raw scores; filtered slots at -FLT_MAX) with norm pruning.

        Items are ordered by factor norm, largest first. For a customer ``u`` no item beyond position
        ``cap`` can score above ``|u| * norm[cap]`` (Cauchy-Schwarz), so once the k-th best score within the
        first ``cap`` items reaches that bound the customer is done. Everybody starts with the first
        ``HEAD`` items; the rest go round again with 4x the cap. Selection is implicit's ``topk``. On the
        synthetic 1M x 50k run most customers finish within the head (docs/recommender.md).
        """
        index = self._factor_index()
        order, rank, norms, items = index.order, index.rank, index.norms, index.items
        n_items = order.size
        banned_rank = np.sort(rank[np.flatnonzero(banned)])
        q_norm = np.linalg.norm(queries.astype(np.float64), axis=1)
        out_idx = np.zeros((queries.shape[0], k), dtype=np.int64)
        out_raw = np.full((queries.shape[0], k), np.float32(-np.finfo(np.float32).max))
        todo = np.arange(queries.shape[0])
        cap = min(n_items, max(HEAD, 4 * k))
        while todo.size:
            sub = None
            if seen is not None:
                r, c = seen_positions(seen[todo], rank, cap)
                sub = sp.csr_matrix((np.ones(r.size, dtype=np.float32), (r, c)), shape=(todo.size, cap))
            cut = banned_rank[: np.searchsorted(banned_rank, cap)].astype(np.int32)
            idx, raw = _parallel_topk(items[:cap], queries[todo], min(k, cap), sub, cut if cut.size else None)
            if cap >= n_items:
                done = np.ones(todo.size, dtype=bool)
            else:
                bound = q_norm[todo] * norms[cap]
                kth = raw[:, -1].astype(np.float64) if idx.shape[1] == k else np.full(todo.size, -np.inf)
                done = kth > bound + 1e-6 * (np.abs(bound) + 1.0)  # float rounding margin
            width = idx.shape[1]
            out_idx[todo[done], :width] = order[idx[done]]
            out_raw[todo[done], :width] = raw[done]
            todo = todo[~done]
            cap = min(n_items, cap * 4)
        return out_idx, out_raw

    def _als_moments(self, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of each user's ALS scores over all products, without scoring them."""
        index = self._factor_index()
        f = factors.astype(np.float64)
        mean = f @ index.mean
        var = ((f @ index.gram) * f).sum(axis=1) - mean * mean
        std = np.sqrt(np.maximum(var, 0.0))
        return mean.astype(np.float32), np.where(std > 1e-12, std, 1.0).astype(np.float32)

    def _factor_index(self) -> _FactorIndex:
        if self._index is None:
            self._index = _FactorIndex.build(self.als.item_factors)
        return self._index

    def _row_z(self, part: str = "popular") -> np.ndarray:
        """The z-scored row of a same-for-everyone part (:func:`row_z`)."""
        return row_z(part, getattr(self, part))

    def score(self, data: Interactions, users: np.ndarray) -> np.ndarray:
        repeat = self.params["repeat"]
        if repeat is not None:
            out, shift = self._z_parts(data, users, repeat)
            out -= shift[:, None].astype(np.float32)
            w_own = float(repeat.get("own", 0.0))
            if w_own:
                own = self._own_matrix(data)[users]
                r = np.repeat(np.arange(len(users)), np.diff(own.indptr))
                out[r, own.indices] += np.float32(w_own) * own.data
            return out
        out = self.discover_score(data, users)
        own = data.aligned(self.buy_again.pair_scores(data))[users]
        r = np.repeat(np.arange(len(users)), np.diff(own.indptr))
        # bought products rank above every discovery, in buy-again order
        top = out.max(axis=1)
        # the discover score re-orders own products a little (``repeat_mix``) but never sinks them
        mix = float(self.params["repeat_mix"]) * out[r, own.indices]
        out[r, own.indices] = top[r] + 100.0 + own.data + mix
        return out

    def own_scores(self, data: Interactions, users: np.ndarray) -> sp.csr_matrix:
        """The ``buy_again`` order: each user's own products scored by ``score`` (CSR, own products only).

        Without a ``repeat`` mix it is the buy-again score. With one, up to ``DENSE_ITEMS`` products it is
        the mix itself; above, the parts that are cheap at given positions (own, popularity, ALS) are
        summed and the others left out (:mod:`recommender.select` offers no other parts there).
        """
        own = self._own_matrix(data)[users]
        repeat = self.params["repeat"]
        if repeat is None:
            return own
        r = np.repeat(np.arange(len(users)), np.diff(own.indptr))
        if data.shape[1] <= DENSE_ITEMS:
            values = np.empty(own.nnz, dtype=np.float32)
            for start in range(0, len(users), 2048):
                stop = min(len(users), start + 2048)
                lo, hi = own.indptr[start], own.indptr[stop]
                values[lo:hi] = self._repeat_at(
                    data, users[start:stop], r[lo:hi] - start, own.indices[lo:hi], own.data[lo:hi]
                )
        else:
            values = np.float32(repeat.get("own", 0.0)) * own.data
            for part in POPULAR_PARTS:
                values += np.float32(repeat.get(part, 0.0)) * self._row_z(part)[own.indices]
            w_als = float(repeat.get("als", 0.0))
            if w_als:
                factors = self.als.user_factors[users]
                mean, std = self._als_moments(factors)
                dot = np.einsum("ij,ij->i", factors[r], self.als.item_factors[own.indices])
                values += np.float32(w_als) * (dot - mean[r]) / std[r]
        # own products stay positive and ordered (the service ranks them by these values)
        out = sp.csr_matrix((values.astype(np.float32), own.indices, own.indptr), shape=own.shape)
        out.data -= out.data.min(initial=0.0) - np.float32(1e-3)
        return out

    def _repeat_at(
        self, data: Interactions, users: np.ndarray, r: np.ndarray, c: np.ndarray, own: np.ndarray
    ) -> np.ndarray:
        """``score(data, users)[r, c]`` for a ``repeat`` mix, summed part by part in ``score``'s order
        without its dense sum: the parts the discover score weighs come from this batch's dense z-scores
        (which discover then reuses); TIFU-KNN, item-kNN and ALS otherwise from their sparse rows or
        factor moments (no dense score rows); ``own`` is the buy-again score at (r, c)."""
        values = np.zeros(r.size, dtype=np.float32)
        for part, w in self.params["repeat"].items():
            if not w or part == "own":
                continue
            if part in SAME_ROW_PARTS:
                z = self._row_z(part)[c]
            elif self.weight(part) or part == "ease":
                scores, mean, std = self._part(part, data, users)
                z = (scores[r, c] - mean[r]) / std[r]
            elif part == "als":
                factors = self.als.user_factors[users]
                mean, std = self._als_moments(factors)
                dot = np.einsum("ij,ij->i", factors[r], self.als.item_factors[c])
                z = (dot - mean[r]) / std[r]
            else:
                z = getattr(self, part).z_at(data, users, r, c)
            values += np.float32(w) * z
        w_own = float(self.params["repeat"].get("own", 0.0))
        if w_own:
            values += np.float32(w_own) * own
        return values

    def item_similarity(self, items: np.ndarray) -> np.ndarray:
        return self.itemknn.item_similarity(items)

    def state(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for part in self.needed():
            out.update({f"{part}.{k}": v for k, v in getattr(self, part).state().items()})
        return out

    @classmethod
    def from_state(cls, params: dict[str, Any], state: dict[str, np.ndarray]) -> BlendModel:
        model = cls(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in params.items()})
        for part in model.needed():
            prefix = part + "."
            sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            klass = type(getattr(model, part))
            setattr(model, part, klass.from_state(getattr(model, part).params, sub))
        return model


def row_z(part: str, model: PopularModel | TrendModel) -> np.ndarray:
    """What a same-for-everyone part adds to the blend, z-scored over the products: log popularity
    (``log1p`` of buyer counts) or the trend score. Selection validates exactly these rows."""
    row = np.log1p(model.item_scores) if part in POPULAR_PARTS else model.item_scores
    return np.asarray(standardize(row[None, :])[0])


@dataclass(frozen=True)
class _FactorIndex:
    """What candidate scoring derives once from the ALS item factors: the items ordered by factor norm
    (largest first) with each item's rank in that order, and the factors' mean and Gram matrix (for the
    exact per-customer mean and variance of ALS scores)."""

    order: np.ndarray
    rank: np.ndarray
    norms: np.ndarray  # float64, in ``order``
    items: np.ndarray  # item factors in ``order``, C-contiguous (what implicit's topk reads)
    mean: np.ndarray
    gram: np.ndarray

    @classmethod
    def build(cls, item_factors: np.ndarray) -> _FactorIndex:
        norms = np.linalg.norm(item_factors, axis=1)
        order = np.argsort(-norms, kind="stable")
        rank = np.empty(order.size, dtype=np.int64)
        rank[order] = np.arange(order.size)
        wide = item_factors.astype(np.float64)
        return cls(
            order=order,
            rank=rank,
            norms=norms[order].astype(np.float64),
            items=np.ascontiguousarray(item_factors[order]),
            mean=wide.mean(axis=0),
            gram=wide.T @ wide / max(wide.shape[0], 1),
        )


def _parallel_topk(
    items: np.ndarray,
    queries: np.ndarray,
    k: int,
    seen: Any,
    banned: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """implicit's fused matmul + top-k, one single-threaded call per core on slices of the queries
    (measured ~1.6x faster on 2 cores than its own ``num_threads=0`` on 2,048 x 50k x 64)."""
    from implicit.cpu.topk import topk

    workers = max(1, min(os.cpu_count() or 1, queries.shape[0] // 256))

    def run(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        found: tuple[np.ndarray, np.ndarray] = topk(
            items,
            queries[lo:hi],
            k,
            filter_query_items=None if seen is None else seen[lo:hi],
            filter_items=banned,
            num_threads=1,
        )
        return found

    if workers == 1:
        idx, raw = run(0, queries.shape[0])
        return idx.astype(np.int64), raw
    bounds = np.linspace(0, queries.shape[0], workers + 1).astype(int)
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(run, bounds[:-1], bounds[1:]))
    return np.vstack([p[0] for p in parts]).astype(np.int64), np.vstack([p[1] for p in parts])
