"""Audience and sending commands: retain segments, segment, send, runs, run show."""

from __future__ import annotations

from campaigns.cli.app import app  # noqa: F401
