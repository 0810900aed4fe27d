"""The single-scheduler lock (a lock row with heartbeat on SQLite, an advisory lock on PostgreSQL)."""

from __future__ import annotations

from campaigns.store.base import StoreBase


class SchedulingStore(StoreBase):
    pass
