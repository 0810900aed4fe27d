"""Plain records the store hands out. No ORM object or Session ever leaves the store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np


@dataclass(frozen=True, slots=True)
class CustomerRecord:
    id: int
    external_id: str
    email: str | None
    first_name: str | None
    last_name: str | None
    country: str | None
    timezone: str | None
    marketing_consent: bool
    consent_source: str | None
    is_demo: bool


@dataclass(frozen=True, slots=True)
class ProductRecord:
    id: int
    sku: str
    name: str
    price: float | None
    currency: str
    url: str | None
    image_url: str | None
    category: str | None
    in_stock: bool


@dataclass(frozen=True, slots=True)
class OrderLineRecord:
    product: ProductRecord
    quantity: int
    unit_price: float


@dataclass(frozen=True, slots=True)
class OrderRecord:
    id: int
    external_id: str
    customer_id: int
    ordered_at: datetime
    currency: str
    total: float
    lines: tuple[OrderLineRecord, ...] = ()


@dataclass(frozen=True)
class PurchaseColumns:
    """Purchase lines as parallel numpy columns (one chunk, or all concatenated).

    ``ordered_at`` is ``datetime64[s]`` (UTC); returns are never included.
    """

    customer_id: np.ndarray  # int64
    product_id: np.ndarray  # int64
    order_id: np.ndarray  # int64
    ordered_at: np.ndarray  # datetime64[s]
    quantity: np.ndarray  # float64
    unit_price: np.ndarray  # float64

    def __len__(self) -> int:
        return int(self.customer_id.shape[0])

    @staticmethod
    def concat(chunks: list[PurchaseColumns]) -> PurchaseColumns:
        if not chunks:
            return PurchaseColumns(
                np.empty(0, np.int64),
                np.empty(0, np.int64),
                np.empty(0, np.int64),
                np.empty(0, "datetime64[s]"),
                np.empty(0, np.float64),
                np.empty(0, np.float64),
            )
        return PurchaseColumns(*(np.concatenate([getattr(c, name) for c in chunks]) for name in _COLUMNS))


_COLUMNS = ("customer_id", "product_id", "order_id", "ordered_at", "quantity", "unit_price")


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import did: rows read, what was written, and what each cleaning rule set aside."""

    path: str
    source: str
    rows_read: int
    customers_added: int
    products_added: int
    orders_added: int
    order_lines_added: int
    returns_added: int
    set_aside: dict[str, int] = field(default_factory=dict)
    rejected: int = 0
    rejects_path: str | None = None
    seconds: float = 0.0


@dataclass(frozen=True, slots=True)
class CatalogCounts:
    customers_with_orders: int
    customers_total: int
    products: int
    orders: int
    order_lines: int
    returns: int
    revenue: float
    first_order_at: datetime | None
    last_order_at: datetime | None


# -- what importers hand to the store (one ImportBatch per file, written in one transaction) --


@dataclass(slots=True)
class CustomerIn:
    external_id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    country: str | None = None
    timezone: str | None = None
    marketing_consent: bool = False
    consent_source: str | None = None
    consent_at: datetime | None = None
    is_demo: bool = False


@dataclass(slots=True)
class ProductIn:
    sku: str
    name: str
    price: float | None
    currency: str
    url: str | None = None
    image_url: str | None = None
    category: str | None = None
    in_stock: bool = True


@dataclass(slots=True)
class OrderIn:
    external_id: str
    customer_key: str
    ordered_at: datetime
    currency: str
    # (sku, quantity, unit_price) in file order; line_no is the position
    lines: list[tuple[str, int, float]] = field(default_factory=list)


@dataclass(slots=True)
class ReturnIn:
    external_id: str
    line_no: int
    customer_key: str
    sku: str
    quantity: int
    unit_price: float
    returned_at: datetime


@dataclass
class ImportBatch:
    source: str
    customers: dict[str, CustomerIn] = field(default_factory=dict)
    products: dict[str, ProductIn] = field(default_factory=dict)
    orders: dict[str, OrderIn] = field(default_factory=dict)
    returns: list[ReturnIn] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WriteCounts:
    customers_added: int
    products_added: int
    orders_added: int
    order_lines_added: int
    returns_added: int
