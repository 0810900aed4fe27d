"""Recommender models behind one protocol (:mod:`recommender.models.base`), by alias.

=============  ===========================================================
alias          model
=============  ===========================================================
``als``        implicit ALS on recency-weighted confidences
``itemknn``    implicit BM25 (or cosine) item-item neighbours
``popular``    most bought in a recent window (baseline, cold start)
``personal``   the customer's own most-bought products (baseline)
``buy_again``  own products with recency and repurchase timing
``blend``      ALS + item-kNN + recent popularity; own products first
=============  ===========================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

from recommender.errors import UnknownModelError
from recommender.models.als import ALSModel
from recommender.models.base import Model, recommend, top_n
from recommender.models.blend import BlendModel
from recommender.models.itemknn import ItemKNNModel
from recommender.models.personal import BuyAgainModel, PersonalFrequencyModel
from recommender.models.popular import PopularModel

MODELS: dict[str, Any] = {
    m.name: m
    for m in (ALSModel, ItemKNNModel, PopularModel, PersonalFrequencyModel, BuyAgainModel, BlendModel)
}


def model_class(name: str) -> Any:
    try:
        return MODELS[name]
    except KeyError:
        raise UnknownModelError(f"unknown model {name!r} (known: {', '.join(sorted(MODELS))})") from None


def make_model(name: str, params: dict[str, Any] | None = None) -> Model:
    """A new, unfitted model by alias; raises UnknownModelError / RecommenderError for bad names or params."""
    from recommender.errors import RecommenderError

    try:
        return model_class(name)(**(params or {}))  # type: ignore[no-any-return]
    except TypeError as exc:
        raise RecommenderError(f"model {name!r}: {exc}") from None


def model_from_state(name: str, params: dict[str, Any], state: dict[str, np.ndarray]) -> Model:
    return model_class(name).from_state(params, state)  # type: ignore[no-any-return]


__all__ = ["MODELS", "Model", "make_model", "model_class", "model_from_state", "recommend", "top_n"]
