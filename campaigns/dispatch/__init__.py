"""Dispatchers: how a run's batches reach the processes that send them (see :mod:`.base`)."""

from __future__ import annotations

from campaigns.dispatch.base import DISPATCHERS, Dispatcher, resolve_dispatcher

__all__ = ["DISPATCHERS", "Dispatcher", "resolve_dispatcher"]
