"""Suppressions (unsubscribes, bounces, complaints), the event log, and order feedback."""

from __future__ import annotations

from campaigns.store.base import StoreBase


class EngagementStore(StoreBase):
    pass
