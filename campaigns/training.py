"""Glue between the store and the recommender: load purchases, train, evaluate, tune, load the model.

The recommender package knows nothing of the database; this module hands it numpy columns and turns its
errors into the campaign engine's (``NotFoundError`` for a missing model or empty history, ``ModelError``
for a corrupt file or one trained on another database).
"""

from __future__ import annotations

import copy
import dataclasses
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
from recommender.models.blend import BlendModel
from recommender.select import select as select_model
from recommender.storage import ModelFileMissing
from recommender.tune import tune

#: recency half-life (days) used when neither --params nor a tuned model says otherwise
DEFAULT_HALF_LIFE_DAYS = 60.0
#: seconds `retain train` spends on selection by default (Online Retail: selection + fit <= 60 s)
DEFAULT_BUDGET = 45.0


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


def database_identity(store: Any) -> str | None:
    """A short hash naming the database (URL without credentials; a SQLite file by its absolute path)."""
    engine = getattr(store, "engine", None)
    if engine is None:
        return None
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        text = "sqlite:" + str(Path(url.database).resolve())
    else:
        text = url.set(password=None, username=None).render_as_string(hide_password=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _model_owner(settings: Settings, store: Any) -> tuple[dict[str, Any] | None, bool]:
    """The metadata of the model file at the configured path (None when there is none or it is
    unreadable) and whether it belongs to this database: same database identity (when recorded) and its
    products still have the SKUs it was trained on (its data fingerprint)."""
    try:
        rec = RetainRecommender.load(settings.resolved_model_path())
    except RecommenderError:
        return None, False
    meta = rec.metadata
    recorded = meta.get("database")
    if recorded and recorded != database_identity(store):
        return meta, False
    fingerprint = data_fingerprint(rec.data.items.values, store.all_products())
    return meta, meta.get("data_fingerprint") == fingerprint


def _previous_tuning(settings: Settings, store: Any) -> dict[str, Any] | None:
    """Tuning stored in this database's model file (never another database's)."""
    meta, ours = _model_owner(settings, store)
    tuning = (meta or {}).get("tuning") if ours else None
    return tuning if isinstance(tuning, dict) else None


def train_model(
    store: Any,
    settings: Settings,
    *,
    model: str | None = None,
    params: dict[str, Any] | None = None,
    cutoff: datetime | None = None,
    tuning: dict[str, Any] | None = None,
    budget: float = DEFAULT_BUDGET,
    select: bool | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Fit on every purchase before ``cutoff`` (all when None) and save to ``settings.resolved_model_path()``.

    By default (no ``model``, no ``params``) the blend weights are *selected* for this shop on rolling
    validation windows carved from the same purchases (:func:`recommender.select.select`, within
    ``budget`` seconds); the choice, the validation table and the reason go into the model file
    (``selection``). ``model`` (``blend``, ``als``, ``itemknn``) or ``params`` (blend parameters plus an
    optional ``half_life_days``) train that configuration instead. Parameters a previous ``retain tune``
    stored for *this* database are the starting point either way; another database's are never reused.

    A model file at the path that belongs to another database is not overwritten unless ``force``
    (ModelError naming both). Returns the ``.npz`` path. Raises NotFoundError when there is nothing to
    learn from, ModelError for bad parameters.
    """
    meta, ours = _model_owner(settings, store)
    path = settings.resolved_model_path()
    if meta is not None and not ours and not force:
        raise ModelError(
            f"the model at {path}.npz belongs to another database (trained {meta.get('trained_at', '?')} "
            "on other products): set model_path (RETAIN_MODEL_PATH) for this database, or pass --force "
            "to replace it"
        )
    tuned = tuning or (None if params is not None else _previous_tuning(settings, store))
    chosen = dict(params if params is not None else (tuned or {}).get("params", {}))
    half_life = chosen.pop("half_life_days", (tuned or {}).get("half_life_days", DEFAULT_HALF_LIFE_DAYS))
    do_select = select if select is not None else (model is None and params is None)
    cols = load_training_data(store, until=cutoff)
    as_of = np.datetime64(cutoff.replace(tzinfo=None), "s") if cutoff else None
    selection = None
    try:
        if do_select:
            if not len(cols):
                raise InteractionError("no purchases to learn from (empty history): import orders first")
            end = as_of if as_of is not None else cols.ordered_at.max() + np.timedelta64(1, "s")
            selection = select_model(
                cols, end, budget=budget, half_life_days=half_life, base_params=chosen, progress=progress
            )
            chosen = selection.params
        data = build_interactions(
            cols.customer_id,
            cols.product_id,
            cols.order_id,
            cols.ordered_at,
            quantity=cols.quantity,
            half_life_days=half_life,
            as_of=as_of,
            baskets=_reads_baskets(model or "blend", chosen),
        )
        rec = RetainRecommender.fit(data, model=model or "blend", params=chosen)
    except InteractionError as exc:
        raise NotFoundError(f"cannot train: {exc}") from None
    except RecommenderError as exc:
        raise ModelError(f"cannot train: {exc}") from None
    products = store.all_products()
    rec.metadata.update(
        data_fingerprint=data_fingerprint(data.items.values, products),
        database=database_identity(store),
        cutoff=cutoff.isoformat() if cutoff else None,
        purchase_lines=len(cols),
        data_signature=_data_signature(store),
        trained_at=datetime.now().astimezone().isoformat(timespec="seconds"),
    )
    if tuned:
        rec.metadata["tuning"] = tuned
    if selection is not None:
        rec.metadata["selection"] = selection.to_json()
    rec.save(path)
    return path.with_name(path.name + ".npz")


def _data_signature(store: Any) -> str | None:
    """The store's data signature (campaigns/store/scheduling.py), recorded so the scheduler can tell an
    import happened since this model was trained; None for stores that cannot tell."""
    signature = getattr(store, "data_signature", None)
    return signature() if callable(signature) else None


def model_is_stale(store: Any, settings: Settings) -> str | None:
    """Why the model should be retrained now (no model yet; data imported since it was trained), or None."""
    from recommender.storage import read_metadata

    if not callable(getattr(store, "data_signature", None)):
        return None
    try:
        meta = read_metadata(settings.resolved_model_path())
    except RecommenderError:
        return "no model yet"
    if meta.get("data_signature") != store.data_signature():
        return "purchase history changed since the model was trained (an import)"
    return None


def _reads_baskets(model: str, params: dict[str, Any]) -> bool:
    """Whether the model to fit reads the order sequence (TIFU-KNN): only then is it built."""
    if model not in ("blend", "als", "itemknn"):
        return True
    try:
        return "tifuknn" in BlendModel(**copy.deepcopy(params)).needed()
    except TypeError:
        return True  # bad parameters: the fit reports them


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
    settings: Settings | None = None,
    budget: float = DEFAULT_BUDGET,
    shipped: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Temporal holdout on the store's purchases (see recommender.evaluate); cutoff defaults to the
    last ``holdout_days`` of data.

    ``params`` (blend parameters + half_life_days) apply to the ``als`` and ``blend`` rows; without them,
    parameters a previous ``retain tune`` stored for this database (``settings``' model file) are used.
    The ``shipped`` row is what ``retain train`` would ship: selection on validation windows before the
    cutoff (``budget`` seconds), then a fit on the training side. ``result["selection"]`` holds its choice.
    """
    cols = load_training_data(store)
    start = (
        np.datetime64(cutoff.replace(tzinfo=None), "s")
        if cutoff
        else _latest_default_cutoff(cols, holdout_days)
    )
    tuned = None
    if params is None and settings is not None:
        tuned = _previous_tuning(settings, store)
    p = dict(params if params is not None else (tuned or {}).get("params", {}))
    half_life = p.pop("half_life_days", (tuned or {}).get("half_life_days", DEFAULT_HALF_LIFE_DAYS))
    from recommender.evaluate import DEFAULT_MODELS

    models = dict(DEFAULT_MODELS)
    models["als"] = ("als", dict(p.get("als", {})))
    models["blend"] = ("blend", p)
    selection = None
    try:
        if shipped:
            before = cols.ordered_at < start
            train_side = PurchaseColumns(*(np.asarray(c)[before] for c in _columns(cols)))
            selection = select_model(
                train_side, start, budget=budget, half_life_days=half_life, base_params=p, progress=progress
            )
            models["shipped"] = ("blend", selection.params)
        result = evaluate(
            cols, start, holdout_days, models=models, half_life_days=half_life, progress=progress
        )
    except InteractionError as exc:
        raise NotFoundError(f"cannot evaluate: {exc}") from None
    except RecommenderError as exc:
        raise ModelError(f"cannot evaluate: {exc}") from None
    result["tuned"] = tuned is not None
    if selection is not None:
        result["selection"] = selection.to_json()
    return result


def _columns(cols: PurchaseColumns) -> list[np.ndarray]:
    return [getattr(cols, f.name) for f in dataclasses.fields(cols)]


def tune_store(
    store: Any,
    *,
    cutoff: datetime | None = None,
    holdout_days: int = 30,
    budget: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Search parameters on the validation window before ``cutoff`` (never on the test window), within
    ``budget`` seconds when given."""
    cols = load_training_data(store)
    start = (
        np.datetime64(cutoff.replace(tzinfo=None), "s")
        if cutoff
        else _latest_default_cutoff(cols, holdout_days)
    )
    try:
        found = tune(cols, start, holdout_days, progress=progress, budget=budget)
    except InteractionError as exc:
        raise NotFoundError(f"cannot tune: {exc}") from None
    found["database"] = database_identity(store)
    return found
