"""``RetainRecommender``: the one object the campaign engine calls.

It holds the training interactions, a fitted :class:`~recommender.models.blend.BlendModel` (ALS, item-kNN,
recent popularity, buy-again) and optionally a :class:`~recommender.catalog.Catalog` for rules and
reasons. It speaks external ids; index mapping stays inside.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender.blocks import BUY_AGAIN, DISCOVER, POPULAR, SIMILAR, Block, Recommendation, RecommendedItem
from recommender.catalog import Catalog
from recommender.errors import ModelFileError, RecommenderError
from recommender.interactions import IdMap, Interactions
from recommender.models.base import mask_seen, top_n
from recommender.models.blend import BlendModel
from recommender.rules import Rules, allowed_items, pick
from recommender.storage import read_model, write_model

#: the discover scorers ``fit`` accepts; each is a preset of the blend's weights
DISCOVER_PRESETS: dict[str, dict[str, float]] = {
    "als": {"knn_weight": 0.0, "popular_weight": 0.0},
    "blend": {},
    "itemknn": {},
}
BATCH = 2048
UNKNOWN = "popular: customer unknown to the model (no purchases before it was trained)"


class RetainRecommender:
    """Blocks of recommendations for batches of customers; see ``recommend`` and ``similar_items``."""

    def __init__(
        self,
        data: Interactions,
        model: BlendModel,
        *,
        discover: str = "blend",
        catalog: Catalog | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if discover not in DISCOVER_PRESETS:
            raise RecommenderError(f"unknown model {discover!r} (known: {', '.join(DISCOVER_PRESETS)})")
        self.data = data
        self.model = model
        self.discover = discover
        self.catalog = catalog
        self.metadata: dict[str, Any] = dict(metadata or {})

    # ------------------------------------------------------------------ building

    @classmethod
    def fit(
        cls, data: Interactions, *, model: str = "als", params: dict[str, Any] | None = None
    ) -> RetainRecommender:
        """Fit every part on ``data``. ``model`` picks the discover scorer (``als``, ``blend``, ``itemknn``);
        ``params`` are blend parameters (``{"als": {"factors": 64}, "popular_weight": 0.1, ...}``)."""
        if model not in DISCOVER_PRESETS:
            raise RecommenderError(f"unknown model {model!r} (known: {', '.join(DISCOVER_PRESETS)})")
        merged = {**DISCOVER_PRESETS[model], **(params or {})}
        try:
            blend = BlendModel(**merged)
        except TypeError as exc:
            raise RecommenderError(str(exc)) from None
        blend.fit(data)
        return cls(data, blend, discover=model)

    def with_catalog(self, catalog: Catalog | None) -> RetainRecommender:
        self.catalog = catalog
        return self

    @property
    def params(self) -> dict[str, Any]:
        return self.model.full_params()

    # ------------------------------------------------------------------ scoring

    def _discover_scores(self, users: np.ndarray) -> np.ndarray:
        if self.discover == "itemknn":
            return self.model.itemknn.score(self.data, users)
        return self.model.discover_score(self.data, users)

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
        for start in range(0, known.size, BATCH):
            pos = known[start : start + BATCH]
            made = {name: self._block_batch(name, rows[pos], allowed, n, rules) for name in blocks}
            for j, p in enumerate(pos):
                out[int(p)] = tuple(made[name][j] for name in blocks)
        return [Recommendation(int(cid), out.get(k, (popular,))) for k, cid in enumerate(ids)]

    def _block_batch(
        self, name: str, users: np.ndarray, allowed: np.ndarray, n: int, rules: Rules
    ) -> list[Block]:
        fetch = n if rules.max_per_category is None else n * (rules.max_per_category + 1) * 4
        if name == BUY_AGAIN:
            idx, vals = self._buy_again_top(users, allowed, fetch)
        else:
            if name == DISCOVER:
                scores = self._discover_scores(users)
            else:
                scores = np.tile(self.model.popular.item_scores, (users.size, 1))
            if rules.exclude_bought:
                mask_seen(scores, self.data.counts, users)
            scores[:, ~allowed] = -np.inf
            idx, vals = top_n(scores, fetch)
        cats = self._categories() if rules.max_per_category is not None else None
        chosen = [pick(idx[j], vals[j], n, cats, rules.max_per_category) for j in range(users.size)]
        because = np.full((users.size, n), -1, dtype=np.int64)
        if name == DISCOVER:
            pair_u = np.repeat(np.arange(users.size), [len(c) for c in chosen])
            pair_i = np.array([idx[j, k] for j, c in enumerate(chosen) for k in c], dtype=np.int64)
            src = self.model.itemknn.because(self.data, users[pair_u], pair_i)
            cursor = 0
            for j, c in enumerate(chosen):
                because[j, : len(c)] = src[cursor : cursor + len(c)]
                cursor += len(c)
        pair_u = np.repeat(np.arange(users.size), [len(c) for c in chosen])
        pair_i = np.array([idx[j, k] for j, c in enumerate(chosen) for k in c], dtype=np.int64)
        times = np.asarray(self.data.counts[users[pair_u], pair_i]).ravel() if name == BUY_AGAIN else None
        names = self._item_names()
        item_ids = self.data.items.values
        blocks = []
        cursor = 0
        for j, c in enumerate(chosen):
            items = []
            for slot, k in enumerate(c):
                item = int(idx[j, k])
                pid = int(item_ids[item])
                score = float(vals[j, k])
                if times is not None:
                    t = int(times[cursor + slot])
                    reason = f"You bought this {t} times" if t > 1 else "You bought this before"
                    items.append(RecommendedItem(pid, score, reason, pid))
                elif because[j, slot] >= 0:
                    src = int(because[j, slot])
                    items.append(
                        RecommendedItem(pid, score, f"Because you bought {names[src]}", int(item_ids[src]))
                    )
                else:
                    items.append(RecommendedItem(pid, score, "Popular right now", None))
            cursor += len(c)
            blocks.append(self._finish(name, items, allowed, n, rules, users[j]))
        return blocks

    def _buy_again_top(
        self, users: np.ndarray, allowed: np.ndarray, fetch: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``fetch`` own products per user, straight from the sparse rows (-inf pads short rows)."""
        own = self.data.aligned(self.model.buy_again.pair_scores(self.data))[users]
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

    def _finish(
        self, name: str, items: list[RecommendedItem], allowed: np.ndarray, n: int, rules: Rules, user: int
    ) -> Block:
        if items:
            return Block(name, tuple(items))
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
        """Display name of every model item (catalogue name, else "product <id>")."""
        fallback = np.array([f"product {i}" for i in self.data.items.values], dtype=object)
        if self.catalog is None:
            return fallback
        pos = self.catalog.positions(self.data.items.values)
        names = np.where(pos >= 0, self.catalog.name[np.maximum(pos, 0)], "")
        return np.where(names != "", names, fallback)

    def _categories(self) -> np.ndarray | None:
        if self.catalog is None:
            return None
        pos = self.catalog.positions(self.data.items.values)
        return np.where(pos >= 0, self.catalog.category[np.maximum(pos, 0)], "")

    def _popular_block(self, allowed: np.ndarray, n: int, rules: Rules, reason: str) -> Block:
        scores = np.where(allowed, self.model.popular.item_scores, -np.inf)[None, :]
        fetch = n if rules.max_per_category is None else n * (rules.max_per_category + 1) * 4
        idx, vals = top_n(scores, fetch)
        chosen = pick(idx[0], vals[0], n, self._categories(), rules.max_per_category)
        items = tuple(
            RecommendedItem(
                int(self.data.items.values[idx[0, k]]), float(vals[0, k]), "Popular right now", None
            )
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
        sim = self.model.itemknn.similarity
        if items.size:
            contrib = sim[items].toarray()
            scores = np.where(allowed & (contrib.sum(axis=0) > 0), contrib.sum(axis=0), -np.inf)
        else:
            scores = np.full(self.data.shape[1], -np.inf)
        idx, vals = top_n(scores[None, :].astype(np.float32), n if rules.max_per_category is None else n * 8)
        chosen = pick(idx[0], vals[0], n, self._categories(), rules.max_per_category)
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
            model = BlendModel.from_state(dict(meta["params"]), state)
            if model.als.item_factors.shape[0] != shape[1] or model.als.user_factors.shape[0] != shape[0]:
                raise ValueError("factor shapes do not match the id maps")
        except (KeyError, ValueError, TypeError, RecommenderError) as exc:
            raise ModelFileError(f"{path}: model file is corrupt or incomplete ({exc})") from None
        return cls(data, model, discover=meta.get("model", "blend"), metadata=meta)
