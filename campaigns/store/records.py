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
    region: str | None = None  # province/state code from the shop's export


#: product statuses (Shopify's; WooCommerce "Published" 1 -> active, 0/-1 -> draft)
PRODUCT_STATUSES = ("active", "draft", "archived")


@dataclass(frozen=True, slots=True)
class ProductRecord:
    """A product as the catalogue knows it.

    ``url`` is the shop's product page (built from the handle at import time), ``image_url`` and
    ``image_alt`` its main image, ``compare_at_price`` the "was" price when it is on sale. Products
    only ever seen in orders have the defaults below. :attr:`available` says whether it may be
    recommended or shown: active, published and in stock.
    """

    id: int
    sku: str
    name: str
    price: float | None
    currency: str
    url: str | None
    image_url: str | None
    category: str | None
    in_stock: bool
    handle: str | None = None
    image_alt: str | None = None
    compare_at_price: float | None = None
    status: str = "active"
    published: bool = True
    vendor: str | None = None
    tags: str | None = None
    inventory_qty: int | None = None

    @property
    def available(self) -> bool:
        """Active, published and in stock: the only products a recommendation or promotion may show."""
        return self.in_stock and self.published and self.status == "active"

    @property
    def on_sale(self) -> bool:
        """A compare-at ("was") price above the price: show both, the old one struck through."""
        return (
            self.price is not None
            and self.compare_at_price is not None
            and self.compare_at_price > self.price
        )


@dataclass(frozen=True, slots=True)
class OrderLineRecord:
    product: ProductRecord
    quantity: int
    unit_price: float | None  # None: the file had no prices
    discount: float | None = None  # the whole line's discount, when the export has one

    @property
    def line_total(self) -> float | None:
        return None if self.unit_price is None else self.quantity * self.unit_price


@dataclass(frozen=True, slots=True)
class OrderRecord:
    id: int
    external_id: str
    customer_id: int
    ordered_at: datetime
    currency: str
    total: float | None  # None: the file had no prices
    lines: tuple[OrderLineRecord, ...] = ()
    financial_status: str | None = None
    discount_codes: str | None = None
    discount_amount: float | None = None
    refunded_amount: float | None = None


@dataclass(frozen=True, slots=True)
class PurchaseHistory:
    """What one customer has ever bought: product ids, and the categories of those products."""

    product_ids: frozenset[int] = frozenset()
    categories: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class ProductEventRecord:
    """A change found by a catalogue re-import (``kind``: back_in_stock, out_of_stock, price_drop)."""

    id: int
    product_id: int
    sku: str
    kind: str
    old_value: float | None
    new_value: float | None
    created_at: datetime


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
    #: catalogue imports: products changed and the events recorded ({"back_in_stock": 2, ...})
    products_updated: int = 0
    events: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what the import decided that the user should know (e.g. "no prices")


@dataclass(frozen=True, slots=True)
class CatalogCounts:
    customers_with_orders: int
    customers_total: int
    products: int
    orders: int
    order_lines: int
    returns: int
    revenue: float  # over priced orders (orders.total not NULL)
    first_order_at: datetime | None
    last_order_at: datetime | None
    priced_orders: int = 0


@dataclass(frozen=True, slots=True)
class CurrencyTotals:
    """Orders and revenue in one currency (KPIs are never summed across currencies)."""

    currency: str
    orders: int
    priced_orders: int
    revenue: float


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
    region: str | None = None
    tags: list[str] | None = None  # None: leave the customer's tags alone; a list replaces them


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
    # catalogue imports only (orders imports leave these alone)
    handle: str | None = None
    image_alt: str | None = None
    compare_at_price: float | None = None
    status: str = "active"
    published: bool = True
    vendor: str | None = None
    tags: str | None = None
    inventory_qty: int | None = None


@dataclass(slots=True)
class OrderIn:
    external_id: str
    customer_key: str
    ordered_at: datetime
    currency: str
    # (sku, quantity, unit_price or None) in file order; line_no is the position
    lines: list[tuple[str, int, float | None]] = field(default_factory=list)
    financial_status: str | None = None
    discount_codes: str | None = None
    discount_amount: float | None = None
    refunded_amount: float | None = None
    line_discounts: dict[int, float] | None = None  # line index -> the line's discount


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
    """One file's worth of records. ``catalog`` marks a products export: its products overwrite the
    catalogue fields (and changes become product events); an orders file only fills gaps."""

    source: str
    customers: dict[str, CustomerIn] = field(default_factory=dict)
    products: dict[str, ProductIn] = field(default_factory=dict)
    orders: dict[str, OrderIn] = field(default_factory=dict)
    returns: list[ReturnIn] = field(default_factory=list)
    catalog: bool = False


@dataclass(frozen=True, slots=True)
class WriteCounts:
    customers_added: int
    products_added: int
    orders_added: int
    order_lines_added: int
    returns_added: int
    products_updated: int = 0
    events: dict[str, int] = field(default_factory=dict)
