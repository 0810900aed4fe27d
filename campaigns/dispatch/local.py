"""The local dispatcher (the default): the whole run in this process, via :func:`run_campaign`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition
from campaigns.runner import RunSummary, run_campaign


class LocalDispatcher:
    """Streams the audience through one :class:`campaigns.runner.RunProcessor` in this process."""

    name = "local"

    def send(
        self,
        store: Any,
        settings: Settings,
        definition: CampaignDefinition,
        *,
        recommender: Any | None = None,
        run_key: str | None = None,
        now: datetime | None = None,
        sender: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> RunSummary:
        """Run or resume the campaign here; see :func:`campaigns.runner.run_campaign` for what it raises."""
        return run_campaign(
            store, settings, definition, recommender=recommender, run_key=run_key, now=now, sender=sender,
            progress=progress,
        )  # fmt: skip
