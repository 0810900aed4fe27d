"""Scheduler commands: retain schedule sync|list|run."""

from __future__ import annotations

from campaigns.cli.app import app  # noqa: F401
