"""Web commands: retain preview, serve, feedback."""

from __future__ import annotations

from campaigns.cli.app import app  # noqa: F401
