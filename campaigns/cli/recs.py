"""Recommender commands: retain train, evaluate, tune."""

from __future__ import annotations

from campaigns.cli.app import app  # noqa: F401
