"""Per-shop model selection: what ``retain train`` ships, chosen on validation windows from the training data.

With training data up to ``as_of`` and windows of ``days`` days, window ``w`` (1 = the latest) trains on
purchases before ``as_of - w * days`` and validates on the ``days`` after (rolling origin: one odd month
cannot decide). Nothing at or after ``as_of`` is read, so ``retain evaluate`` can select on the training
side of its cutoff exactly as ``retain train`` would.

In every window each *part* is fitted once and scored for the validation customers — popularity (7 days,
30 days and all time), trend (rising sales), the customer's own products (buy-again score, and plain order counts), ALS, item-kNN,
EASE^R and TIFU-KNN — and every *configuration* is a weighting of z-scored parts, i.e. a
:class:`~recommender.models.blend.BlendModel` parameter set. Per block:

- ``discover`` (products new to the customer; bought ones masked) and ``repeat`` (everything the customer
  buys next; the ``buy_again`` order) are searched separately;
- each part alone is a candidate, the baselines among them (popularity 30 days / all time; for repeat also
  ``personal``: own products by order count, then all-time bestsellers);
- from the best single candidate, weights are learned by coordinate ascent on the mean validation
  nDCG@10 over the windows (a weight change is kept only when it improves the mean);
- the result is never worse on validation than the strongest baseline: the baselines are candidates, and
  a model or learned blend replaces the strongest one only when its validation gain exceeds ``MARGIN``
  (2) standard errors of the paired per-customer difference (pooled over the windows) — within noise the
  baseline ships.

Everything runs within ``budget`` seconds: windows are dropped when fitting them would not fit (every
candidate is always compared on the same windows), expensive parts are skipped when their first fit says
they cannot be afforded, and the weight search stops at the deadline. Catalogues above
:data:`~recommender.models.blend.DENSE_ITEMS` products offer only the parts the candidate path serves
exactly (ALS, item-kNN, popularity; own/popularity/ALS for repeat; not EASE^R, TIFU-KNN or trend). Above ``max_customers`` customers the
windows are built from a deterministic sample of customers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from recommender.evaluate import PurchaseLike, temporal_split, to_datetime64
from recommender.interactions import Interactions
from recommender.metrics import user_ndcg
from recommender.models.base import _top_n_partition, standardize
from recommender.models.blend import DENSE_ITEMS, POPULAR_PARTS, SAME_ROW_PARTS, BlendModel, row_z
from recommender.models.personal import BuyAgainModel
from recommender.models.popular import PopularModel

BLOCKS = ("discover", "repeat")
#: buy-again parameters that turn the own-products score into plain order counts (the personal baseline)
COUNT_ONLY = {"half_life_days": 1e9, "due_weight": 0.0}
#: a weight so large that own products always come first (the personal baseline)
OWN_FIRST = 1000.0
Z_GRID = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
#: the learned repeat mix never puts own products first whatever their scores (that is the ``personal``
#: baseline, a candidate of its own): bestsellers must be able to outrank a weak personal history
OWN_GRID = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
#: share of the budget for fitting the windows (the rest is the weight search, split between the blocks)
FIT_SHARE = 0.6
#: parts skipped when one fit says every window's would take more than half the fitting share
EXPENSIVE = ("ease", "tifuknn", "als")
K = 10
#: standard errors of the paired validation difference a model must gain to replace the strongest baseline
MARGIN = 2.0
#: coordinate ascent starts (the best single candidates)
STARTS = 2
#: coordinate-ascent passes over the parts
PASSES = 2


@dataclass
class Candidate:
    """One configuration: weights of parts (``own`` / ``own_count`` are the buy-again terms)."""

    name: str
    weights: dict[str, float]
    baseline: bool = False
    scores: list[float] = field(default_factory=list)  # validation nDCG@10 per window
    #: paired difference against the strongest baseline over the validation customers (diff, se)
    significance: dict[str, float] | None = None
    #: the better-validating candidate a baseline was kept over (its gain was within one standard error)
    replaced: str | None = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores)) if self.scores else float("-inf")


@dataclass
class _Window:
    cutoff: np.datetime64
    train: Interactions
    users: np.ndarray  # validation customers (train index space)
    truth: dict[str, sp.csr_matrix]  # block -> rows aligned with users
    seen: sp.csr_matrix  # bought before the window, rows aligned with users
    parts: dict[str, np.ndarray] = field(default_factory=dict)  # z-scored dense, or 1-D for popularity


@dataclass
class Selection:
    params: dict[str, Any]
    half_life_days: float | None
    table: list[dict[str, Any]]
    choice: dict[str, dict[str, Any]]
    windows: list[dict[str, Any]]
    notes: list[str]
    seconds: float
    budget: float

    def to_json(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "half_life_days": self.half_life_days,
            "choice": self.choice,
            "windows": self.windows,
            "table": self.table,
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
            "budget": self.budget,
        }


def _part_grid(part: str) -> tuple[float, ...]:
    return OWN_GRID if part.startswith("own") else Z_GRID


def select(
    purchases: PurchaseLike,
    as_of: Any,
    *,
    budget: float = 45.0,
    windows: int = 3,
    days: int = 30,
    half_life_days: float | None = 60.0,
    base_params: dict[str, Any] | None = None,
    max_customers: int = 50_000,
    max_cells: int = 1 << 23,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> Selection:
    """Choose blend parameters for each block on rolling validation windows before ``as_of``.

    ``base_params`` are blend parameters for the parts (e.g. tuned ALS settings); the weights are chosen
    here. Returns a :class:`Selection` whose ``params`` are ready for ``BlendModel(**params)``.
    """
    started = time.perf_counter()
    # the weight search ends a little early: the final comparisons and the result still take time
    deadline = started + 0.95 * float(budget)
    say = progress or (lambda _m: None)
    base = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (base_params or {}).items()}
    notes: list[str] = []
    purchases = _sample_customers(purchases, max_customers, seed, notes)
    end = to_datetime64(as_of)
    fit_budget = started + FIT_SHARE * float(budget)
    usable: list[_Window] = []
    available: list[str] = []
    for w in range(1, max(1, windows) + 1):
        t0 = time.perf_counter()
        # windows are built and fitted one at a time; another is started only when the average so far
        # says it fits in the fitting share of the budget (every candidate compares on the same windows)
        if usable and t0 + (t0 - started) / len(usable) > fit_budget:
            notes.append(f"budget: validated on {len(usable)} of {windows} windows")
            break
        cutoff = end - np.timedelta64(int(days) * w, "D")
        try:
            split = temporal_split(purchases, cutoff, days, half_life_days=half_life_days)
        except Exception as exc:  # InteractionError: no data before / in the window
            notes.append(f"window from {cutoff}: skipped ({exc})")
            break
        window = _make_window(split.train, split.truth, cutoff, max_cells, seed)
        if not window.users.size:
            notes.append(f"window from {cutoff}: skipped (no validation customers)")
            break
        if not usable:
            available = _offered(window.train.shape[1], notes)
        for part in list(available):
            t_part = time.perf_counter()
            _fit_part(window, part, base)
            spent = time.perf_counter() - t_part
            # an expensive part whose first fit says it cannot be afforded in every window is dropped
            if not usable and part in EXPENSIVE and spent * windows > FIT_SHARE * float(budget) / 2:
                notes.append(f"budget: {part} skipped (one fit took {spent:.1f} s)")
                available.remove(part)
                window.parts.pop(part, None)
        usable.append(window)
        say(
            f"validation window from {cutoff}: {window.users.size} customers, {time.perf_counter() - t0:.1f} s"
        )
    if not usable:
        notes.append("no validation window has test customers: shipped the default blend")
        return Selection(
            _default_params(base), half_life_days, [], {}, [], notes, time.perf_counter() - started, budget
        )
    for window in usable:
        for part in set(window.parts) - set(available):
            window.parts.pop(part)
    table: list[dict[str, Any]] = []
    choice: dict[str, dict[str, Any]] = {}
    chosen: dict[str, Candidate] = {}
    for k, block in enumerate(BLOCKS):
        # each block gets its share of what is left, so the second is not starved by the first
        now = time.perf_counter()
        block_deadline = now + max(deadline - now, 0.0) / (len(BLOCKS) - k)
        best, rows = _search(block, usable, available, block_deadline, notes)
        chosen[block] = best
        table.extend(rows)
        baselines = [r for r in rows if r["baseline"]]
        strongest = max(baselines, key=lambda r: r["mean"])
        choice[block] = {
            "name": best.name,
            "weights": best.weights,
            "vs_baseline": best.significance,
            "validation_ndcg@10": best.mean,
            "strongest_baseline": strongest["name"],
            "baseline_ndcg@10": strongest["mean"],
            "reason": _reason(best, strongest),
        }
        say(f"{block}: {choice[block]['reason']}")
    params = _params_for(chosen["discover"], chosen["repeat"], base)
    window_info = [
        {
            "cutoff": str(w.cutoff),
            "days": int(days),
            "customers": {b: int((np.diff(w.truth[b].indptr) > 0).sum()) for b in BLOCKS},
        }
        for w in usable
    ]
    return Selection(
        params, half_life_days, table, choice, window_info, notes, time.perf_counter() - started, budget
    )


def _offered(n_items: int, notes: list[str]) -> list[str]:
    """The parts selection fits for a catalogue of ``n_items`` products, cheapest first."""
    if n_items > DENSE_ITEMS:
        notes.append(
            f"more than {DENSE_ITEMS} products: EASE^R, TIFU-KNN and trend are not offered (not served exactly)"
        )
        return [*POPULAR_PARTS, "own", "own_count", "itemknn", "als"]
    return [*POPULAR_PARTS, "trend", "own", "own_count", "itemknn", "tifuknn", "ease", "als"]


def _reason(best: Candidate, strongest: dict[str, Any]) -> str:
    sig = best.significance
    if best.baseline and best.replaced and sig:
        return (
            f"{best.name}, the strongest baseline (validation nDCG@10 {best.mean:.4f}): the best model, "
            f"{best.replaced}, gained only {sig['diff']:+.4f} ± {sig['se']:.4f} (less than {MARGIN:g} standard errors)"
        )
    if best.baseline:
        return (
            f"{best.name} is the strongest candidate on validation (nDCG@10 {best.mean:.4f}); no model or "
            "blend beat it"
        )
    gain = f"{sig['diff']:+.4f} ± {sig['se']:.4f}" if sig else f"{best.mean - strongest['mean']:+.4f}"
    return (
        f"{best.name}: validation nDCG@10 {best.mean:.4f}, {gain} over the strongest baseline "
        f"{strongest['name']} ({strongest['mean']:.4f})"
    )


def _default_params(base: dict[str, Any]) -> dict[str, Any]:
    return {**base}


def _sample_customers(purchases: PurchaseLike, limit: int, seed: int, notes: list[str]) -> PurchaseLike:
    cust = np.asarray(purchases.customer_id)
    ids = np.unique(cust)
    if ids.size <= limit:
        return purchases
    keep_ids = np.sort(np.random.default_rng(seed).choice(ids, size=limit, replace=False))
    keep = np.isin(cust, keep_ids)
    notes.append(f"{ids.size} customers: validated on a sample of {limit}")

    @dataclass
    class _Cols:
        customer_id: np.ndarray
        product_id: np.ndarray
        order_id: np.ndarray
        ordered_at: np.ndarray
        quantity: np.ndarray

    return _Cols(
        cust[keep],
        np.asarray(purchases.product_id)[keep],
        np.asarray(purchases.order_id)[keep],
        np.asarray(purchases.ordered_at)[keep],
        np.asarray(purchases.quantity)[keep],
    )


def _make_window(
    train: Interactions, truth: dict[str, sp.csr_matrix], cutoff: np.datetime64, max_cells: int, seed: int
) -> _Window:
    has = (np.diff(truth["repeat"].indptr) > 0) | (np.diff(truth["discover"].indptr) > 0)
    users = np.flatnonzero(has)
    cap = max(200, max_cells // max(train.shape[1], 1))
    if users.size > cap:
        users = np.sort(np.random.default_rng(seed).choice(users, size=cap, replace=False))
    return _Window(
        cutoff,
        train,
        users,
        {b: truth[b][users] for b in BLOCKS},
        train.counts[users],
    )


def _fit_part(window: _Window, part: str, base: dict[str, Any]) -> None:
    data, users = window.train, window.users
    if part in POPULAR_PARTS:
        params = dict(base.get(part, {}) or {})
        if POPULAR_PARTS[part] is not None:
            params["window_days"] = POPULAR_PARTS[part]
        pop = PopularModel(**params)
        pop.fit(data)
        window.parts[part] = row_z(part, pop)
        return
    if part in ("own", "own_count"):
        params = COUNT_ONLY if part == "own_count" else dict(base.get("buy_again", {}) or {})
        own = data.aligned(BuyAgainModel(**params).pair_scores(data))[users]
        window.parts[part] = own.toarray()
        return
    blend = BlendModel(**{part: dict(base.get(part, {}) or {})})
    model = getattr(blend, part)
    model.fit(data)
    if part in SAME_ROW_PARTS:  # the same for every customer: kept as one row
        window.parts[part] = row_z(part, model)
        return
    window.parts[part] = standardize(model.score(data, users))


def _scores(window: _Window, weights: dict[str, float]) -> np.ndarray:
    out = np.zeros((window.users.size, window.train.shape[1]), dtype=np.float32)
    for part, w in weights.items():
        if w:
            z = window.parts[part]
            out += np.float32(w) * (z[None, :] if z.ndim == 1 else z)
    return out


def _ndcg(window: _Window, block: str, scores: np.ndarray) -> float:
    """Validation nDCG@10 of ``scores`` (left as they were: bought products are masked and restored)."""
    return float(np.mean(_user_ndcg(window, block, scores))) if window.truth[block].nnz else 0.0


def _user_ndcg(window: _Window, block: str, scores: np.ndarray) -> np.ndarray:
    """Per validation customer (with a relevant product) nDCG@10 of ``scores``."""
    truth = window.truth[block]
    if block == "discover":
        r, c = window.seen.nonzero()
        saved = scores[r, c]
        scores[r, c] = -np.inf
    idx, vals = _top_n_partition(scores, K)  # k=10 of a few thousand: faster than top_n here
    if block == "discover":
        scores[r, c] = saved
    recs = np.where(np.isfinite(vals), idx, -1)
    return user_ndcg(recs, truth, K)


def _evaluate(candidate: Candidate, windows: list[_Window], block: str) -> Candidate:
    candidate.scores = [_ndcg(w, block, _scores(w, candidate.weights)) for w in windows]
    return candidate


def _evaluate_step(
    sums: list[np.ndarray], windows: list[_Window], block: str, part: str, delta: float
) -> tuple[list[float], list[np.ndarray]]:
    """Scores of the current weights plus ``delta`` on ``part`` (one pass per window, not one per part)."""
    out, trial_sums = [], []
    for window, current in zip(windows, sums, strict=True):
        z = window.parts[part]
        trial = current + np.float32(delta) * (z[None, :] if z.ndim == 1 else z)
        out.append(_ndcg(window, block, trial))
        trial_sums.append(trial)
    return out, trial_sums


def _singles(block: str, parts: list[str]) -> list[Candidate]:
    names = {
        "popular": "popular (30 days)",
        "popular_all": "popular (all time)",
        "popular_7": "popular (7 days)",
        "own": "buy-again score",
        "own_count": "own order counts",
    }  # the other parts go by their own names
    out = []
    for part in parts:
        if block == "discover" and part.startswith("own"):
            continue  # own products are masked in discover
        out.append(Candidate(names.get(part, part), {part: 1.0}, baseline=part in POPULAR_PARTS))
    if block == "repeat" and "own_count" in parts:
        out.append(Candidate("personal", {"own_count": OWN_FIRST, "popular_all": 1.0}, baseline=True))
    return out


def _search(
    block: str, windows: list[_Window], parts: list[str], deadline: float, notes: list[str]
) -> tuple[Candidate, list[dict[str, Any]]]:
    singles = [_evaluate(c, windows, block) for c in _singles(block, parts)]
    best = max(singles, key=lambda c: (c.mean, c.baseline))
    rows = [_row(block, c) for c in singles]
    tunable = [p for p in parts if not (block == "discover" and p.startswith("own"))]
    # coordinate ascent from the three best single candidates (one start gets stuck in local optima,
    # e.g. own products first vs own products mixed with bestsellers)
    # (personal, own products first, is no start: the learned mix weighs them finitely, see OWN_GRID)
    starts = sorted((c for c in singles if c.name != "personal"), key=lambda c: -c.mean)[:STARTS]
    current = best
    stopped = False
    for start in starts:
        found, stopped = _ascend(start, windows, block, tunable, deadline)
        if found.mean > current.mean + 1e-4:
            current = found
        if stopped:
            break
    if stopped:
        notes.append(f"budget: the {block} weight search stopped at the deadline")
    if current is not best and current.mean > best.mean + 1e-4:
        current.weights = {k: v for k, v in current.weights.items() if v}
        current.name = "blend (" + ", ".join(f"{k} {v:g}" for k, v in sorted(current.weights.items())) + ")"
        rows.append(_row(block, current))
        best = current
    if not best.baseline:
        # a model replaces the strongest baseline only when it validates better by more than MARGIN standard
        # errors of the paired difference (pooled over the windows' customers, which understates the
        # error: a customer appears in several windows); within noise the baseline ships (small
        # validation gains did not hold on test: docs/recommender.md)
        strongest = max((c for c in singles if c.baseline), key=lambda c: c.mean)
        diff = np.concatenate(
            [
                _user_ndcg(w, block, _scores(w, best.weights))
                - _user_ndcg(w, block, _scores(w, strongest.weights))
                for w in windows
            ]
        )
        se = float(diff.std(ddof=1) / np.sqrt(diff.size)) if diff.size > 1 else float("inf")
        best.significance = {"diff": float(diff.mean()), "se": se}
        if not diff.mean() > MARGIN * se:
            strongest.significance = best.significance
            strongest.replaced = best.name
            return strongest, rows
    return best, rows


def _ascend(
    start: Candidate, windows: list[_Window], block: str, tunable: list[str], deadline: float
) -> tuple[Candidate, bool]:
    """Coordinate ascent on the weights from ``start``: per part, the best grid value if it improves the
    mean validation nDCG; up to ``PASSES`` passes. Returns the result and whether the deadline stopped it."""
    current = Candidate("blend", dict(start.weights))
    current.scores = list(start.scores)
    sums = [_scores(w, current.weights) for w in windows]
    stopped = False
    for _ in range(PASSES):
        improved = False
        for part in tunable:
            best_step: tuple[Candidate, list[np.ndarray]] | None = None
            for w in _part_grid(part):
                if time.perf_counter() > deadline:
                    stopped = True
                    break
                if current.weights.get(part, 0.0) == w:
                    continue
                if (
                    part.startswith("own")
                    and w
                    and any(current.weights.get(o) for o in ("own", "own_count") if o != part)
                ):
                    continue  # one buy-again term at a time (it sets the buy_again parameters)
                trial = Candidate("blend", {**current.weights, part: w})
                if not any(trial.weights.values()):
                    continue
                delta = w - current.weights.get(part, 0.0)
                trial.scores, trial_sums = _evaluate_step(sums, windows, block, part, delta)
                if trial.mean > (best_step[0].mean if best_step else current.mean + 1e-4):
                    best_step = (trial, trial_sums)
            if best_step is not None:
                current, sums = best_step
                improved = True
            if stopped:
                break
        if stopped or not improved:
            break
    return current, stopped


def _row(block: str, c: Candidate) -> dict[str, Any]:
    return {
        "block": block,
        "name": c.name,
        "baseline": c.baseline,
        "weights": {k: v for k, v in c.weights.items() if v},
        "windows": [round(s, 5) for s in c.scores],
        "mean": c.mean,
    }


def _params_for(discover: Candidate, repeat: Candidate, base: dict[str, Any]) -> dict[str, Any]:
    """BlendModel parameters that score ``discover`` and ``repeat`` as validated."""
    from recommender.models.blend import WEIGHT_OF

    params: dict[str, Any] = {k: v for k, v in base.items() if k not in WEIGHT_OF.values()}
    for part, key in WEIGHT_OF.items():
        params[key] = float(discover.weights.get(part, 0.0))
    mix = {k: v for k, v in repeat.weights.items() if v and not k.startswith("own")}
    if repeat.weights.get("own_count"):
        mix["own"] = repeat.weights["own_count"]
        params["buy_again"] = {**dict(base.get("buy_again", {}) or {}), **COUNT_ONLY}
    elif repeat.weights.get("own"):
        mix["own"] = repeat.weights["own"]
    params["repeat"] = mix
    return params
