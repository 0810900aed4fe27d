"""Errors the recommender raises on purpose (it never imports the campaign engine).

    RecommenderError(ValueError)
    ├── InteractionError     bad purchase input: mismatched columns, NaN/inf, nothing to learn from
    ├── ModelFileError       a model file is missing, corrupt, or of an unknown format version
    └── UnknownModelError    a model name that is not in the alias table

The campaign engine (``campaigns/training.py``) translates these into its own error tree.
"""

from __future__ import annotations


class RecommenderError(ValueError):
    """Base of the recommender's deliberate errors; ``str()`` is a message for the user."""


class InteractionError(RecommenderError):
    """The purchase data handed to the recommender cannot be used as it is."""


class ModelFileError(RecommenderError):
    """A saved model cannot be read (missing, corrupt, unknown version)."""


class UnknownModelError(RecommenderError, LookupError):
    """A model name that is not known."""
