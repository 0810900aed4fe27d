"""Collaborative filtering on purchase history. Knows nothing of SQL, Jinja or email: it takes numpy
arrays of ids and returns ids and scores (see docs/recommender.md)."""

from __future__ import annotations

from recommender.blocks import Block, Recommendation, RecommendedItem
from recommender.catalog import Catalog
from recommender.errors import InteractionError, ModelFileError, RecommenderError
from recommender.interactions import IdMap, Interactions, build_interactions
from recommender.rules import Rules
from recommender.service import RetainRecommender
from recommender.storage import ModelFileMissing

__all__ = [
    "Block",
    "Catalog",
    "IdMap",
    "InteractionError",
    "Interactions",
    "ModelFileError",
    "ModelFileMissing",
    "Recommendation",
    "RecommendedItem",
    "RecommenderError",
    "RetainRecommender",
    "Rules",
    "build_interactions",
]
