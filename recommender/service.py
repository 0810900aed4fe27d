"""``RetainRecommender``: the one object the campaign engine calls.

It holds the training interactions, a fitted model and optionally a :class:`~recommender.catalog.Catalog`
for rules and reasons. It speaks external ids; index mapping stays inside.

The model is any :class:`~recommender.models.base.Model` (by default the per-shop selected
:class:`~recommender.models.blend.BlendModel`); blocks are served through the protocol: ``discover`` from
``discover_top`` when the model has it, else from ``discover_scores`` with bought products masked;
``buy_again`` from ``own_scores`` when the model has it, else from ``score`` at the customer's own
products. Reasons ("Because you bought X"), ``similar_items`` and the popular fallbacks come from the
*support* parts (item-kNN, popularity) — the blend's own, or a small blend fitted beside another model.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender.blocks import BUY_AGAIN, DISCOVER, POPULAR, SIMILAR, Block, Recommendation, RecommendedItem
from recommender.catalog import Catalog
from recommender.errors import ModelFileError, RecommenderError
from recommender.interactions import IdMap, Interactions
from recommender.models import make_model, model_class
from recommender.models.base import Model, discover_scores, mask_seen_at, masked_top_n, top_n
from recommender.models.blend import DENSE_ITEMS, BlendModel
from recommender.rules import Rules, allowed_items, pick_rows
from recommender.storage import read_model, write_model

#: the discover scorers ``fit`` accepts; each is a preset of the blend's weights
DISCOVER_PRESETS: dict[str, dict[str, float]] = {
    "als": {"knn_weight": 0.0, "popular_weight": 0.0},
    "blend": {},
    "itemknn": {},
}
#: customers scored together (twice as many above DENSE_ITEMS products)
BATCH = 1024
#: threads for a multi-batch ``recommend`` over a densely scored catalogue (None: one per core)
THREADS: int | None = None
UNKNOWN = "popular: customer unknown to the model (no purchases before it was trained)"


class RetainRecommender:
    """Blocks of recommendations for batches of customers; see ``recommend`` and ``similar_items``."""

    def __init__(
        self,
        data: Interactions,
        model: Model,
        *,
        discover: str = "blend",
        support: BlendModel | None = None,
        catalog: Catalog | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(model, BlendModel):
            support = model
        elif support is None:
            raise RecommenderError("a model other than the blend needs fitted support parts (support=)")
        self.data = data
        self.model = model
        self.support = support
        self.discover = discover
        self.catalog = catalog
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._own: sp.csr_matrix | None = None  # buy-again score of every bought pair
        self._names: np.ndarray | None = None
        self._cat_codes: np.ndarray | None = None

    # ------------------------------------------------------------------ building

    @classmethod
    def fit(
        cls, data: Interactions, *, model: str = "als", params: dict[str, Any] | None = None
    ) -> RetainRecommender:
        """Fit on ``data``. ``model`` ``als``, ``blend`` or ``itemknn`` picks a preset of the blend, whose
        ``params`` are blend parameters (``{"als": {"factors": 64}, "popular_weight": 0.1, ...}``); any other
        registered alias or dotted path (``ease``, ``tifuknn``, ``pkg.mod:Class``) is that model with
        ``params``, served through the protocol beside support parts (item-kNN, popularity)."""
        if model in DISCOVER_PRESETS:
            merged = {**DISCOVER_PRESETS[model], **(params or {})}
            try:
                blend = BlendModel(**merged)
            except TypeError as exc:
                raise RecommenderError(str(exc)) from None
            blend.fit(data)
            return cls(data, blend, discover=model)
        other = make_model(model, params)
        other.fit(data)
        support = _support()
        support.fit(data)
        return cls(data, other, discover=model, support=support)

    def with_catalog(self, catalog: Catalog | None) -> RetainRecommender:
        self.catalog = catalog
        self._names = self._cat_codes = None
        return self

    @property
    def params(self) -> dict[str, Any]:
        if isinstance(self.model, BlendModel):
            return self.model.full_params()
        return dict(self.model.params)

    # ------------------------------------------------------------------ scoring

    def _name(self, product_id: int) -> str:
        name = self.catalog.name_of(product_id) if self.catalog is not None else None
        return name or f"product {product_id}"

    def recommend(
        self,
        customer_ids: Sequence[int],
        *,
        blocks: Sequence[str] = (BUY_AGAIN, DISCOVER),
        n: int = 4,
        rules: Rules | None = None,
    ) -> list[Recommendation]:
        """One :class:`Recommendation` per customer, in the order given.

        Known customers get the requested blocks (``buy_again``, ``discover``, ``popular``); a block that
        no candidate survives the rules for comes back empty with ``fallback`` saying why (``discover``
        falls back to popular products). Unknown customers get one ``popular`` block with ``fallback``
        set. Raises RecommenderError for an unknown block name or ``n < 1``.
        """
        unknown_blocks = set(blocks) - {BUY_AGAIN, DISCOVER, POPULAR}
        if unknown_blocks:
            raise RecommenderError(
                f"unknown block(s) {sorted(unknown_blocks)}: use buy_again, discover, popular"
            )
        if n < 1:
            raise RecommenderError(f"n must be at least 1, got {n}")
        rules = rules or Rules()
        ids = np.asarray(list(customer_ids), dtype=np.int64)
        rows = self.data.users.index(ids)
        allowed = allowed_items(rules, self.catalog, self.data.items.values)
        popular = self._popular_block(allowed, n, rules, UNKNOWN)
        out: dict[int, tuple[Block, ...]] = {}
        known = np.flatnonzero(rows >= 0)
        # small catalogues are scored densely per batch: smaller batches on one thread per core. Larger
        # ones go through candidates, whose top-k already runs one thread per core (measured: threading
        # the batches too gained nothing at 200k x 10k), so they keep single-threaded 2x batches
        dense = self.data.shape[1] <= DENSE_ITEMS
        size = BATCH if dense else 2 * BATCH
        chunks = [known[start : start + size] for start in range(0, known.size, size)]

        def batch(pos: np.ndarray) -> dict[str, list[Block]]:
            return {name: self._block_batch(name, rows[pos], allowed, n, rules) for name in blocks}

        workers = min(THREADS or os.cpu_count() or 1, len(chunks)) if dense else 1
        if workers > 1:
            # the batches' heavy parts (sparse products, BLAS, sorts) release the GIL: one thread per
            # core; caches are filled first so the threads only read them
            self._warm(blocks, rules)
            with ThreadPoolExecutor(workers) as pool:
                made_all = list(pool.map(batch, chunks))
        else:
            made_all = [batch(pos) for pos in chunks]
        for pos, made in zip(chunks, made_all, strict=True):
            for j, p in enumerate(pos):
                out[int(p)] = tuple(made[name][j] for name in blocks)
        return [Recommendation(int(cid), out.get(k, (popular,))) for k, cid in enumerate(ids)]

    def _warm(self, blocks: Sequence[str], rules: Rules) -> None:
        """Fill the lazily built caches a batch reads (before batches run on several threads)."""
        if BUY_AGAIN in blocks and not self._own_per_batch():
            self._own_scores()
        if DISCOVER in blocks:
            self._item_names()
            self.support.itemknn.warm()
        warm = getattr(self.model, "warm", None)
        if callable(warm):
            warm()
        if rules.max_per_category is not None:
            self._category_codes()

    def _block_batch(
        self, name: str, users: np.ndarray, allowed: np.ndarray, n: int, rules: Rules
    ) -> list[Block]:
        fetch = n if rules.max_per_category is None else n * (rules.max_per_category + 1) * 4
        if name == BUY_AGAIN:
            idx, vals = self._buy_again_top(users, allowed, fetch)
        elif name == DISCOVER and self.discover == "itemknn":
            scores = self.support.itemknn.score(self.data, users)
            idx, vals = masked_top_n(
                scores, self.data.counts, users, fetch, allowed=allowed, exclude_bought=rules.exclude_bought
            )
        elif name == DISCOVER and callable(getattr(self.model, "discover_top", None)):
            idx, vals = self.model.discover_top(  # type: ignore[attr-defined]
                self.data, users, fetch, allowed=allowed, exclude_bought=rules.exclude_bought
            )
        elif name == DISCOVER:
            scores = np.asarray(discover_scores(self.model, self.data, users), dtype=np.float32)
            idx, vals = masked_top_n(
                scores, self.data.counts, users, fetch, allowed=allowed, exclude_bought=rules.exclude_bought
            )
        else:
            idx, vals = self._popular_top(users, allowed, fetch, rules.exclude_bought)
        sel = self._select(idx, vals, n, rules)  # positions into idx/vals, -1 pads
        lens = (sel >= 0).sum(axis=1)
        rows, slots = np.nonzero(sel >= 0)  # row-major: each row's picks in rank order
        cols = sel[rows, slots]
        pick_i = idx[rows, cols]
        pick_v = vals[rows, cols].astype(np.float64).tolist()
        pids = self.data.items.values[pick_i].tolist()
        if name == BUY_AGAIN:
            times = np.asarray(self.data.counts[users[rows], pick_i]).ravel().tolist() if rows.size else []
            reasons = [
                f"You bought this {int(t)} times" if t > 1 else "You bought this before" for t in times
            ]
            sources: list[int | None] = list(pids)
        elif name == DISCOVER:
            src = self.support.itemknn.because(self.data, users[rows], pick_i)
            names = self._item_names()
            src_ids = self.data.items.values[np.maximum(src, 0)].tolist()
            reasons = [
                f"Because you bought {names[s]}" if s >= 0 else "Popular right now" for s in src.tolist()
            ]
            sources = [sid if s >= 0 else None for s, sid in zip(src.tolist(), src_ids, strict=True)]
        else:
            reasons = ["Popular right now"] * len(pids)
            sources = [None] * len(pids)
        items = list(map(RecommendedItem, pids, pick_v, reasons, sources))
        blocks = []
        cursor = 0
        for j, size in enumerate(lens.tolist()):
            got = items[cursor : cursor + size]
            cursor += size
            blocks.append(
                Block(name, tuple(got)) if got else self._empty_block(name, allowed, n, rules, users[j])
            )
        return blocks

    def _select(self, idx: np.ndarray, vals: np.ndarray, n: int, rules: Rules) -> np.ndarray:
        """Which of each row's ranked candidates (best first, -inf last) to show: the first ``n`` finite
        ones, at most ``rules.max_per_category`` per category; (rows, n) positions with -1 padding."""
        if rules.max_per_category is not None:
            return pick_rows(idx, vals, n, self._category_codes(), rules.max_per_category)
        width = min(n, idx.shape[1])
        pos = np.broadcast_to(np.arange(width), (idx.shape[0], width))
        sel = np.where(np.isfinite(vals[:, :width]), pos, -1)
        if width < n:
            sel = np.hstack([sel, np.full((sel.shape[0], n - width), -1, dtype=sel.dtype)])
        return sel

    def _pick(self, idx: np.ndarray, vals: np.ndarray, n: int, rules: Rules) -> list[int]:
        """:meth:`_select` for one ranked row: the positions to show."""
        sel = self._select(idx[None, :], vals[None, :], n, rules)[0]
        return [int(x) for x in sel[sel >= 0]]

    def _popular_top(
        self, users: np.ndarray, allowed: np.ndarray, fetch: int, exclude_bought: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Most popular allowed products per user (minus their own when ``exclude_bought``), exact:
        the global top ``fetch`` + the batch's longest history is enough to fill every row."""
        bought = self.data.counts[users]
        longest = int(np.diff(bought.indptr).max(initial=0)) if exclude_bought else 0
        cand, cand_vals = self.support.popular.top_allowed(allowed, fetch + longest)
        scores = np.repeat(cand_vals[None, :], users.size, axis=0)
        if exclude_bought:
            mask_seen_at(scores, bought, cand)
        pos, vals = top_n(scores, fetch)
        return cand[pos], vals

    def _own_per_batch(self) -> bool:
        check = getattr(self.model, "own_per_batch", None)
        return bool(check(self.data)) if callable(check) else False

    def _own_scores(self) -> sp.csr_matrix:
        if self._own is None:
            users = np.arange(self.data.shape[0])
            scorer = getattr(self.model, "own_scores", None)
            if callable(scorer):
                self._own = scorer(self.data, users)
            else:  # the model's score at each customer's own products, shifted positive
                own = self.data.counts
                r = np.repeat(users, np.diff(own.indptr))
                values = np.empty(own.nnz, dtype=np.float32)
                for start in range(0, users.size, BATCH):
                    lo, hi = own.indptr[start], own.indptr[min(users.size, start + BATCH)]
                    dense = self.model.score(self.data, users[start : start + BATCH])
                    values[lo:hi] = dense[r[lo:hi] - start, own.indices[lo:hi]]
                values -= values.min(initial=0.0) - np.float32(1e-3)
                self._own = sp.csr_matrix((values, own.indices, own.indptr), shape=own.shape)
        return self._own

    def _buy_again_top(
        self, users: np.ndarray, allowed: np.ndarray, fetch: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``fetch`` own products per user, straight from the sparse rows (-inf pads short rows)."""
        if self._own_per_batch():
            own = self.model.own_scores(self.data, users)  # type: ignore[attr-defined]
        else:
            own = self._own_scores()[users]
        rows = np.repeat(np.arange(users.size), np.diff(own.indptr))
        keep = allowed[own.indices]
        rows, cols, data = rows[keep], own.indices[keep], own.data[keep]
        order = np.lexsort((cols, -data, rows))
        rows, cols, data = rows[order], cols[order], data[order]
        starts = np.searchsorted(rows, np.arange(users.size))
        rank = np.arange(rows.size) - starts[rows]
        take = rank < fetch
        idx = np.zeros((users.size, fetch), dtype=np.int64)
        vals = np.full((users.size, fetch), -np.inf, dtype=np.float32)
        idx[rows[take], rank[take]] = cols[take]
        vals[rows[take], rank[take]] = data[take]
        return idx, vals

    def _empty_block(self, name: str, allowed: np.ndarray, n: int, rules: Rules, user: int) -> Block:
        """The block for a user none of whose candidates passed the rules, saying why."""
        if name == BUY_AGAIN:
            return Block(
                name, (), fallback="no past purchase passes the rules (out of stock, excluded or priced out)"
            )
        # discover/popular: state the fallback instead of an empty block
        mask = allowed.copy()
        if rules.exclude_bought:
            mask[self.data.counts[user].indices] = False
        block = self._popular_block(mask, n, rules, "popular: no personal candidate passed the rules")
        return Block(
            name, block.items, fallback=block.fallback if block.items else "no product passes the rules"
        )

    def _item_names(self) -> np.ndarray:
        """Display name of every model item (catalogue name, else "product <id>"), computed once."""
        if self._names is None:
            self._names = self._compute_item_names()
        return self._names

    def _compute_item_names(self) -> np.ndarray:
        fallback = np.array([f"product {i}" for i in self.data.items.values], dtype=object)
        if self.catalog is None:
            return fallback
        pos = self.catalog.positions(self.data.items.values)
        names = np.where(pos >= 0, self.catalog.name[np.maximum(pos, 0)], "")
        return np.where(names != "", names, fallback)

    def _category_codes(self) -> np.ndarray:
        """Each model item's category as an integer code, -1 for none or no catalogue (for
        :func:`~recommender.rules.pick_rows`), computed once per catalogue."""
        if self._cat_codes is None:
            codes = np.full(self.data.shape[1], -1, dtype=np.int64)
            if self.catalog is not None:
                pos = self.catalog.positions(self.data.items.values)
                cats = np.where(pos >= 0, self.catalog.category[np.maximum(pos, 0)], "").astype(str)
                _, inverse = np.unique(cats, return_inverse=True)
                codes = np.where(cats != "", inverse, -1).astype(np.int64)
            self._cat_codes = codes
        return self._cat_codes

    def _popular_block(self, allowed: np.ndarray, n: int, rules: Rules, reason: str) -> Block:
        fetch = n if rules.max_per_category is None else n * (rules.max_per_category + 1) * 4
        idx, vals = self.support.popular.top_allowed(allowed, fetch)
        chosen = self._pick(idx, vals, n, rules)
        items = tuple(
            RecommendedItem(int(self.data.items.values[idx[k]]), float(vals[k]), "Popular right now", None)
            for k in chosen
        )
        return Block(POPULAR, items, fallback=reason if items else f"{reason}; no product passes the rules")

    def similar_items(self, product_ids: Sequence[int], *, n: int = 4, rules: Rules | None = None) -> Block:
        """Products often bought together with ``product_ids`` (e.g. one order), as ``Block("similar")``.

        The given products are never suggested back. When none of them is known to the model, or fewer
        than ``n`` neighbours pass the rules, popular products fill the block and ``fallback`` says so.
        """
        rules = rules or Rules()
        items = self.data.items.index(np.asarray(list(product_ids), dtype=np.int64))
        items = items[items >= 0]
        allowed = allowed_items(rules, self.catalog, self.data.items.values)
        allowed[items] = False
        sim = self.support.itemknn.similarity
        if items.size:
            contrib = sim[items].toarray()
            scores = np.where(allowed & (contrib.sum(axis=0) > 0), contrib.sum(axis=0), -np.inf)
        else:
            scores = np.full(self.data.shape[1], -np.inf)
        idx, vals = top_n(scores[None, :].astype(np.float32), n if rules.max_per_category is None else n * 8)
        chosen = self._pick(idx[0], vals[0], n, rules)
        found = []
        for k in chosen:
            item = int(idx[0, k])
            src = int(items[int(np.argmax(contrib[:, item]))])
            src_id = int(self.data.items.values[src])
            found.append(
                RecommendedItem(
                    int(self.data.items.values[item]),
                    float(vals[0, k]),
                    f"Often bought with {self._name(src_id)}",
                    src_id,
                )
            )
        if len(found) >= n:
            return Block(SIMILAR, tuple(found))
        mask = allowed.copy()
        mask[[self.data.items.index(np.array([it.product_id]))[0] for it in found]] = False
        reason = (
            "products unknown to the model"
            if not items.size
            else "few products are bought together with these"
        )
        pad = self._popular_block(mask, n - len(found), rules, f"popular: {reason}")
        return Block(SIMILAR, tuple(found) + pad.items, fallback=pad.fallback)

    # ------------------------------------------------------------------ files

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write ``<path>.npz`` + ``<path>.json`` (no pickle)."""
        d = self.data
        arrays = {
            "users": d.users.values,
            "items": d.items.values,
            "indptr": d.counts.indptr,
            "indices": d.counts.indices,
            "counts": d.counts.data,
            "weights": d.weights.data,
            "age_days": d.age_days,
            "span_days": d.span_days,
            **{f"model.{k}": v for k, v in self.model.state().items()},
        }
        if self.support is not self.model:
            arrays.update({f"support.{k}": v for k, v in self.support.state().items()})
        meta = {
            **self.metadata,
            "model": self.discover,
            "params": self.params,
            "half_life_days": d.half_life_days,
            "as_of": str(d.as_of),
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "customers": len(d.users),
            "products": len(d.items),
        }
        write_model(path, arrays, meta)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RetainRecommender:
        """Read a model written by ``save``; ModelFileError (or its ModelFileMissing) when it cannot."""
        arrays, meta = read_model(path)
        try:
            users, items = IdMap(arrays["users"]), IdMap(arrays["items"])
            shape = (len(users), len(items))
            counts = sp.csr_matrix((arrays["counts"], arrays["indices"], arrays["indptr"]), shape=shape)
            weights = sp.csr_matrix((arrays["weights"], arrays["indices"], arrays["indptr"]), shape=shape)
            data = Interactions(
                users,
                items,
                weights,
                counts,
                arrays["age_days"],
                arrays["span_days"],
                np.datetime64(meta["as_of"], "s"),
                meta.get("half_life_days"),
            )
            state = {k[len("model.") :]: v for k, v in arrays.items() if k.startswith("model.")}
            name = meta.get("model", "blend")
            support = None
            if name in DISCOVER_PRESETS:
                model: Model = BlendModel.from_state(dict(meta["params"]), state)
                if isinstance(model, BlendModel) and "als" in model.needed():
                    if (
                        model.als.item_factors.shape[0] != shape[1]
                        or model.als.user_factors.shape[0] != shape[0]
                    ):
                        raise ValueError("factor shapes do not match the id maps")
            else:
                model = model_class(name).from_state(dict(meta["params"]), state)
                parts = {k[len("support.") :]: v for k, v in arrays.items() if k.startswith("support.")}
                support = BlendModel.from_state(_support().full_params(), parts)
        except (KeyError, ValueError, TypeError, RecommenderError) as exc:
            raise ModelFileError(f"{path}: model file is corrupt or incomplete ({exc})") from None
        return cls(data, model, discover=name, support=support, metadata=meta)


def _support() -> BlendModel:
    """The parts a model other than the blend is served beside: item-kNN (reasons, similar_items) and
    popularity (fallbacks); nothing is scored by it."""
    return BlendModel(als_weight=0.0, knn_weight=0.0, popular_weight=0.0)
