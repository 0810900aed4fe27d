"""Scale-out commands: retain worker."""

from __future__ import annotations

from campaigns.cli.app import app  # noqa: F401
