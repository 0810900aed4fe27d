"""The local dispatcher (the default): the whole run in this process (:func:`campaigns.runner.execute_run`)."""

from __future__ import annotations

from campaigns.config import Settings
from campaigns.factory import Recommends
from campaigns.runner import RunRequest, execute_run
from campaigns.store.protocols import PipelineStore
from campaigns.summary import RunSummary


class LocalDispatcher:
    """Streams the audience through one :class:`campaigns.runner.RunProcessor` in this process."""

    name = "local"
    loads_model = True

    def send(
        self,
        store: PipelineStore,
        settings: Settings,
        request: RunRequest,
        *,
        recommender: Recommends | None = None,
    ) -> RunSummary:
        """Run or resume the campaign here; see :func:`campaigns.runner.run_campaign` for what it raises."""
        return execute_run(store, settings, request, recommender=recommender)
