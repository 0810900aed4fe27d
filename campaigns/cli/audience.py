"""Audience commands: retain segments, retain segment NAME."""

from __future__ import annotations

from campaigns.cli.app import app  # noqa: F401
