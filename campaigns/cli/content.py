"""Template commands: retain campaigns, render, lint."""

from __future__ import annotations

from campaigns.cli.app import app  # noqa: F401
