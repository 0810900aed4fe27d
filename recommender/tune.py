"""Hyper-parameter search on a validation window carved from the training data only.

With a test cutoff ``C`` and window ``W`` days, tuning trains on purchases before ``C - W`` and scores
``[C - W, C)``: the test window is never looked at. The discover parameters (recency half-life, ALS
alpha/regularization, blend weights) are chosen on ``discover`` nDCG@10; ``repeat_mix`` on ``repeat``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np

from recommender.evaluate import PurchaseLike, evaluate_model, temporal_split, to_datetime64
from recommender.models.blend import BlendModel

GRID: dict[str, list[Any]] = {
    "half_life_days": [None, 30.0, 60.0, 120.0],
    "alpha": [5.0, 15.0],
    "regularization": [20.0, 50.0],
    "popular_weight": [0.0, 0.1, 0.2, 0.4],
    "knn_weight": [0.0, 0.2],
    "repeat_mix": [0.1, 0.3, 0.5],
}


def tune(
    purchases: PurchaseLike,
    cutoff: datetime | np.datetime64 | str,
    holdout_days: int = 30,
    *,
    grid: dict[str, list[Any]] | None = None,
    progress: Callable[[str], None] | None = None,
    budget: float | None = None,
) -> dict[str, Any]:
    """Search ``grid`` (default :data:`GRID`); returns ``{"params", "half_life_days", "validation", "trials"}``.

    ``params`` is ready for ``RetainRecommender.fit(..., params=...)``. With ``budget`` (seconds) the
    search stops after the first ALS setting that ends past it (``validation["complete"]`` says whether
    the whole grid was searched).
    """
    started = time.perf_counter()
    complete = True
    g = {**GRID, **(grid or {})}
    val_cutoff = to_datetime64(cutoff) - np.timedelta64(int(holdout_days), "D")
    trials: list[dict[str, Any]] = []
    best: tuple[float, dict[str, Any], float | None] = (-1.0, {}, None)
    for half_life in g["half_life_days"]:
        split = temporal_split(purchases, val_cutoff, holdout_days, half_life_days=half_life)
        for alpha, reg in itertools.product(g["alpha"], g["regularization"]):
            model = BlendModel(als={"alpha": alpha, "regularization": reg})
            model.fit(split.train)
            for pw, kw in itertools.product(g["popular_weight"], g["knn_weight"]):
                model.params.update(popular_weight=pw, knn_weight=kw)
                m = evaluate_model(model, split.train, split.truth["discover"], exclude_bought=True)
                trial = {"half_life_days": half_life, **model.full_params(), "ndcg@10": m["ndcg@10"]}
                trials.append(trial)
                if m["ndcg@10"] > best[0]:
                    best = (m["ndcg@10"], model.full_params(), half_life)
            if progress:
                progress(
                    f"half-life {half_life}, alpha {alpha}, regularization {reg}: best so far {best[0]:.4f}"
                )
            if budget is not None and time.perf_counter() - started > budget:
                complete = False
                break
        if not complete:
            break
    score, params, half_life = best
    split = temporal_split(purchases, val_cutoff, holdout_days, half_life_days=half_life)
    model = BlendModel(**{k: (dict(v) if isinstance(v, dict) else v) for k, v in params.items()})
    model.fit(split.train)
    repeat_best = (-1.0, params["repeat_mix"])
    for mix in g["repeat_mix"]:
        model.params["repeat_mix"] = mix
        r = evaluate_model(model, split.train, split.truth["repeat"], exclude_bought=False)["ndcg@10"]
        if r > repeat_best[0]:
            repeat_best = (r, mix)
    params["repeat_mix"] = repeat_best[1]
    return {
        "params": params,
        "half_life_days": half_life,
        "validation": {
            "cutoff": str(val_cutoff),
            "days": int(holdout_days),
            "discover_ndcg@10": score,
            "repeat_ndcg@10": repeat_best[0],
            "complete": complete,
            "seconds": round(time.perf_counter() - started, 1),
        },
        "trials": trials,
    }
