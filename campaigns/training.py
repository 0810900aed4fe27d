"""Glue between the store and the recommender: load purchases, train, evaluate, tune, load the model.

The recommender package knows nothing of the database; this module hands it numpy columns and turns its
errors into the campaign engine's (``NotFoundError`` for a missing model or empty history, ``ModelError``
for a corrupt file or one trained on another database).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from campaigns.config import Settings
from campaigns.errors import ModelError, NotFoundError
from campaigns.kinds.common import display_name
from campaigns.store.records import ProductRecord, PurchaseColumns
from recommender import Catalog, RetainRecommender, build_interactions
from recommender.errors import InteractionError, ModelFileError, RecommenderError
from recommender.evaluate import evaluate
from recommender.storage import ModelFileMissing
from recommender.tune import tune

#: recency half-life (days) used when neither --params nor a tuned model says otherwise
DEFAULT_HALF_LIFE_DAYS = 60.0


def load_training_data(store: Any, *, until: datetime | None = None) -> PurchaseColumns:
    """Every purchase line before ``until`` (all when None), returns excluded."""
    return store.purchase_columns(until=until)


def data_fingerprint(product_ids: Sequence[int] | np.ndarray, products: Sequence[ProductRecord]) -> str:
    """sha256 over ``id:sku`` of the model's products: another database gives another fingerprint."""
    sku = {p.id: p.sku for p in products}
    digest = hashlib.sha256()
    for pid in np.asarray(product_ids, dtype=np.int64):
        digest.update(f"{int(pid)}:{sku.get(int(pid), '?')}\n".encode())
    return digest.hexdigest()


def catalog_from_products(products: Sequence[ProductRecord]) -> Catalog:
    return Catalog(
        [p.id for p in products],
        price=[p.price for p in products],
        category=[p.category for p in products],
        # drafts, archived or unpublished products are never recommended, like out-of-stock ones
        in_stock=[p.available for p in products],
        # reasons ("Because you bought ...") read like the product cards: Title Case for ALL-CAPS names
        name=[display_name(p.name) or p.sku for p in products],
    )


def _previous_tuning(settings: Settings) -> dict[str, Any] | None:
    try:
        meta = RetainRecommender.load(settings.resolved_model_path()).metadata
    except RecommenderError:
        return None
    tuning = meta.get("tuning")
    return tuning if isinstance(tuning, dict) else None


def train_model(
    store: Any,
    settings: Settings,
    *,
    model: str = "blend",
    params: dict[str, Any] | None = None,
    cutoff: datetime | None = None,
    tuning: dict[str, Any] | None = None,
) -> Path:
    """Fit on every purchase before ``cutoff`` (all when None) and save to ``settings.resolved_model_path()``.

    ``params`` are blend parameters plus an optional ``half_life_days``; without them, the parameters a
    previous ``retain tune`` wrote into the model file are reused. Returns the ``.npz`` path. Raises
    NotFoundError when there is nothing to learn from, ConfigError-like ModelError for bad parameters.
    """
    tuned = tuning or (None if params is not None else _previous_tuning(settings))
    chosen = dict(params if params is not None else (tuned or {}).get("params", {}))
    half_life = chosen.pop("half_life_days", (tuned or {}).get("half_life_days", DEFAULT_HALF_LIFE_DAYS))
    cols = load_training_data(store, until=cutoff)
    try:
        data = build_interactions(
            cols.customer_id,
            cols.product_id,
            cols.order_id,
            cols.ordered_at,
            quantity=cols.quantity,
            half_life_days=half_life,
            as_of=np.datetime64(cutoff.replace(tzinfo=None), "s") if cutoff else None,
        )
        rec = RetainRecommender.fit(data, model=model, params=chosen)
    except InteractionError as exc:
        raise NotFoundError(f"cannot train: {exc}") from None
    except RecommenderError as exc:
        raise ModelError(f"cannot train: {exc}") from None
    products = store.all_products()
    rec.metadata.update(
        data_fingerprint=data_fingerprint(data.items.values, products),
        cutoff=cutoff.isoformat() if cutoff else None,
        purchase_lines=len(cols),
        trained_at=datetime.now().astimezone().isoformat(timespec="seconds"),
    )
    if tuned:
        rec.metadata["tuning"] = tuned
    path = settings.resolved_model_path()
    rec.save(path)
    return path.with_name(path.name + ".npz")


def load_recommender(settings: Settings, store: Any) -> RetainRecommender:
    """The saved model with the store's catalogue attached.

    Raises NotFoundError when no model exists, ModelError when it is corrupt or was trained on another
    database (its product fingerprint does not match this store's products).
    """
    path = settings.resolved_model_path()
    try:
        rec = RetainRecommender.load(path)
    except ModelFileMissing:
        raise NotFoundError(f"no model at {path}.npz: run `retain train`") from None
    except ModelFileError as exc:
        raise ModelError(f"{exc}: run `retain train` to rebuild it") from None
    products = store.all_products()
    expected = rec.metadata.get("data_fingerprint")
    if expected != data_fingerprint(rec.data.items.values, products):
        raise ModelError(
            f"the model at {path}.npz was trained on another database (its products do not match this "
            "one's): run `retain train`"
        )
    return rec.with_catalog(catalog_from_products(products))


def _latest_default_cutoff(cols: PurchaseColumns, holdout_days: int) -> np.datetime64:
    if not len(cols):
        raise NotFoundError("no purchases in the database: run `retain import ...` first")
    return (cols.ordered_at.max() + np.timedelta64(1, "s")) - np.timedelta64(holdout_days, "D")


def evaluate_store(
    store: Any,
    *,
    cutoff: datetime | None = None,
    holdout_days: int = 30,
    params: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Temporal holdout on the store's purchases (see recommender.evaluate); cutoff defaults to the
    last ``holdout_days`` of data. ``params`` (blend parameters + half_life_days) apply to als and blend."""
    cols = load_training_data(store)
    start = (
        np.datetime64(cutoff.replace(tzinfo=None), "s")
        if cutoff
        else _latest_default_cutoff(cols, holdout_days)
    )
    p = dict(params or {})
    half_life = p.pop("half_life_days", DEFAULT_HALF_LIFE_DAYS)
    from recommender.evaluate import DEFAULT_MODELS

    models = dict(DEFAULT_MODELS)
    models["als"] = ("als", dict(p.get("als", {})))
    models["blend"] = ("blend", p)
    try:
        return evaluate(cols, start, holdout_days, models=models, half_life_days=half_life)
    except InteractionError as exc:
        raise NotFoundError(f"cannot evaluate: {exc}") from None
    except RecommenderError as exc:
        raise ModelError(f"cannot evaluate: {exc}") from None


def tune_store(
    store: Any,
    *,
    cutoff: datetime | None = None,
    holdout_days: int = 30,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Search parameters on the validation window before ``cutoff`` (never on the test window)."""
    cols = load_training_data(store)
    start = (
        np.datetime64(cutoff.replace(tzinfo=None), "s")
        if cutoff
        else _latest_default_cutoff(cols, holdout_days)
    )
    try:
        return tune(cols, start, holdout_days, progress=progress)
    except InteractionError as exc:
        raise NotFoundError(f"cannot tune: {exc}") from None
