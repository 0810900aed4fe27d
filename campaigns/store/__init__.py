"""The store: the only place that builds queries. It hands out plain records, never a Session.

``Store.open(url)`` opens (and, when empty, migrates) a database; the parts live in modules named
for their tables and are combined here::

    store = Store.open("sqlite:///var/retain.db")
    counts = store.catalog_counts()
"""

from __future__ import annotations

from campaigns.store.batches import BatchStore
from campaigns.store.catalog import CatalogStore
from campaigns.store.clicks import ClickStore
from campaigns.store.coupons import CouponStore
from campaigns.store.engagement import EngagementStore
from campaigns.store.ledger import LedgerStore
from campaigns.store.predictions import PredictionStore
from campaigns.store.records import (
    CatalogCounts,
    CustomerRecord,
    ImportBatch,
    ImportSummary,
    OrderLineRecord,
    OrderRecord,
    ProductRecord,
    PurchaseColumns,
)
from campaigns.store.scheduling import SchedulingStore


class Store(
    CatalogStore,
    LedgerStore,
    EngagementStore,
    SchedulingStore,
    BatchStore,
    ClickStore,
    CouponStore,
    PredictionStore,
):
    """Every store operation; see the mixed-in classes for each family of tables."""


__all__ = [
    "CatalogCounts",
    "CustomerRecord",
    "ImportBatch",
    "ImportSummary",
    "OrderLineRecord",
    "OrderRecord",
    "ProductRecord",
    "PurchaseColumns",
    "Store",
]
