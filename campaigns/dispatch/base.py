"""The Dispatcher protocol and its registry: how a run gets from its audience to the workers that send it.

Every run — ``retain send``, a scheduled fire, a follow-up tick — goes through the dispatcher chosen by
one setting (``dispatcher``, env ``RETAIN_DISPATCHER``):

- ``local`` (:mod:`campaigns.dispatch.local`, the default): the pipeline of :mod:`campaigns.runner` in
  this process;
- ``celery`` (:mod:`campaigns.dispatch.celery`, extra ``retain[celery]``): the audience is split into
  batches registered in the database and enqueued on the broker (``settings.broker_url``); workers
  (``retain worker``) send them through the same ledger;
- any object with the same shape, named by dotted path (``myshop.dispatch:RqDispatcher``).

Both bundled ones return a :class:`campaigns.summary.RunSummary` and leave the same rows in ``runs``
and ``deliveries``, so ``retain runs`` shows either kind of run the same way::

    dispatcher = resolve_dispatcher(settings)
    summary = dispatcher.send(store, settings, RunRequest(definition, run_key="weekly:2024-06-03"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from campaigns.config import Settings
from campaigns.errors import ConfigError

if TYPE_CHECKING:
    from campaigns.factory import Recommends
    from campaigns.runner import RunRequest
    from campaigns.store.protocols import PipelineStore
    from campaigns.summary import RunSummary

#: dispatcher name -> "module:class"
DISPATCHERS: dict[str, str] = {
    "local": "campaigns.dispatch.local:LocalDispatcher",
    "celery": "campaigns.dispatch.celery:CeleryDispatcher",
}


@runtime_checkable
class Dispatcher(Protocol):
    """Runs (or resumes) one campaign run, exactly once per run key, and summarises it.

    ``loads_model`` says whether the caller should hand it the trained recommender (the local dispatcher
    renders here; Celery workers load the model themselves). Dry runs and ``--out`` reports always run
    locally: the caller picks the local dispatcher for them.
    """

    name: str
    loads_model: bool

    def send(
        self,
        store: PipelineStore,
        settings: Settings,
        request: RunRequest,
        *,
        recommender: Recommends | None = None,
    ) -> RunSummary: ...


def resolve_dispatcher(spec: str | Settings | Dispatcher) -> Dispatcher:
    """A dispatcher from its name or dotted path, from settings, or an object passed through.

    Raises ConfigError for an unknown name, or when the Celery extra is not installed.
    """
    if isinstance(spec, Dispatcher):
        return spec
    name = spec.dispatcher if isinstance(spec, Settings) else spec
    target = DISPATCHERS.get(name, name)
    if ":" not in target and "." not in target:
        raise ConfigError(
            f"unknown dispatcher {name!r}: expected one of {', '.join(DISPATCHERS)} or a dotted path"
        )
    module_name, _, attr = target.rpartition(":") if ":" in target else target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if name == "celery":
            raise ConfigError(
                f"dispatcher 'celery' needs the Celery extra: pip install 'retain[celery]' ({exc})"
            ) from None
        raise ConfigError(f"dispatcher {name!r}: cannot import {module_name!r} ({exc})") from None
    factory = getattr(module, attr, None)
    dispatcher = factory() if callable(factory) else None
    if not isinstance(dispatcher, Dispatcher):
        raise ConfigError(f"dispatcher {name!r} is not a dispatcher (it needs name, loads_model and send)")
    return dispatcher
