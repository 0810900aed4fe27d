"""Runs and the send ledger (deliveries): claim -> send -> record, exactly once per (run, customer)."""

from __future__ import annotations

from campaigns.store.base import StoreBase


class LedgerStore(StoreBase):
    pass
