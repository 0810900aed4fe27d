"""Recommender models behind one protocol (:class:`recommender.models.base.Model`), by alias or dotted path.

=============  ===========================================================
alias          model
=============  ===========================================================
``als``        implicit ALS on recency-weighted confidences
``itemknn``    implicit BM25 (or cosine) item-item neighbours
``ease``       EASE^R closed-form item-item weights (top products when large)
``tifuknn``    TIFU-KNN: time-decayed basket history + nearest customers
``popular``    most bought in a recent window (baseline, cold start)
``trend``      rising sales: recent buyers against the period before
``personal``   the customer's own most-bought products, then popular (baseline)
``buy_again``  own products with recency and repurchase timing
``blend``      weighted z-scores of the above, per block (what ``retain train`` ships)
=============  ===========================================================

A model outside the package is named by a dotted path, ``"package.module:Class"`` or
``"package.module.Class"`` (like senders): the class must satisfy the protocol (``fit``, ``score``,
``item_similarity``, ``state`` and the class method ``from_state``) and take its parameters as keyword
arguments. :func:`register` adds an alias.
"""

from __future__ import annotations

import importlib
import re
from typing import Any

import numpy as np

from recommender.errors import RecommenderError, UnknownModelError
from recommender.models.als import ALSModel
from recommender.models.base import Model, recommend, top_n
from recommender.models.blend import BlendModel
from recommender.models.ease import EASEModel
from recommender.models.itemknn import ItemKNNModel
from recommender.models.personal import BuyAgainModel, PersonalFrequencyModel
from recommender.models.popular import PopularModel
from recommender.models.tifuknn import TIFUKNNModel
from recommender.models.trend import TrendModel

MODELS: dict[str, type[Model]] = {
    m.name: m
    for m in (
        ALSModel,
        ItemKNNModel,
        EASEModel,
        TIFUKNNModel,
        PopularModel,
        TrendModel,
        PersonalFrequencyModel,
        BuyAgainModel,
        BlendModel,
    )
}

_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*[.:][A-Za-z_]\w*$")
_REQUIRED = ("fit", "score", "item_similarity", "state", "from_state")


def register(model: type[Model], alias: str | None = None) -> None:
    """Make ``model`` available by ``alias`` (default: its ``name``)."""
    _check(model, alias or model.name)
    MODELS[alias or model.name] = model


def _check(model: Any, spec: str) -> None:
    missing = [m for m in _REQUIRED if not callable(getattr(model, m, None))]
    if not isinstance(model, type) or missing or not isinstance(getattr(model, "name", None), str):
        what = f"lacks {', '.join(missing)}" if missing else "is not a model class with a name"
        raise UnknownModelError(f"model {spec!r} {what}: see recommender.models.base.Model")


def model_class(spec: str) -> type[Model]:
    """The model class for an alias in :data:`MODELS` or a dotted path ``package.module:Class``."""
    if spec in MODELS:
        return MODELS[spec]
    if _DOTTED.match(spec):
        module_name, _, attr = spec.replace(":", ".").rpartition(".")
        try:
            found = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise UnknownModelError(f"model {spec!r} cannot be imported ({exc})") from None
        _check(found, spec)
        return found  # type: ignore[no-any-return]
    raise UnknownModelError(f"unknown model {spec!r} (known: {', '.join(sorted(MODELS))}, or a dotted path)")


def make_model(name: str, params: dict[str, Any] | None = None) -> Model:
    """A new, unfitted model by alias or dotted path; UnknownModelError / RecommenderError for bad names or
    parameters."""
    try:
        return model_class(name)(**(params or {}))
    except TypeError as exc:
        raise RecommenderError(f"model {name!r}: {exc}") from None


def model_from_state(name: str, params: dict[str, Any], state: dict[str, np.ndarray]) -> Model:
    return model_class(name).from_state(params, state)


__all__ = [
    "MODELS",
    "Model",
    "make_model",
    "model_class",
    "model_from_state",
    "recommend",
    "register",
    "top_n",
]
