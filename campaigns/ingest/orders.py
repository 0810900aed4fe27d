"""Shared row handling for order exports (Shopify, generic): one line item per row.

:class:`OrderAssembler` turns validated line items into customers/products/orders of an
ImportBatch; exact duplicate rows and inconsistent orders are problems, not silent merges.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from campaigns.ingest.base import RowError
from campaigns.ingest.categories import category_for
from campaigns.store.base import utcnow
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn, ReturnIn

_TRUE = {"yes", "true", "1", "y", "subscribed", "opted_in"}
_FALSE = {"no", "false", "0", "n", "", "unsubscribed", "not_subscribed", "pending"}


def parse_consent(value: str, column: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise RowError(column, f"is not yes/no: {value.strip()[:20]!r}")


def split_name(full: str | None) -> tuple[str | None, str | None]:
    if not full:
        return None, None
    first, _, last = full.partition(" ")
    return first or None, last.strip() or None


class OrderAssembler:
    """Accumulates line items of one file into an ImportBatch."""

    def __init__(self, source: str, consent_source: str) -> None:
        self.batch = ImportBatch(source=source)
        self.consent_source = consent_source
        self._seen_rows: dict[tuple[str, ...], int] = {}
        self._return_lines: dict[str, int] = {}
        self._now = utcnow()

    def check_duplicate(self, line: int, row: Sequence[str]) -> None:
        key = tuple(v.strip() for v in row)
        first = self._seen_rows.setdefault(key, line)
        if first != line:
            raise RowError("(row)", f"duplicate of line {first}; remove one of them")

    def add_customer(
        self,
        key: str,
        *,
        email: str | None,
        first_name: str | None,
        last_name: str | None,
        country: str | None,
        consent: bool | None,
    ) -> None:
        existing = self.batch.customers.get(key)
        if existing is None:
            self.batch.customers[key] = CustomerIn(
                external_id=key,
                email=email,
                first_name=first_name,
                last_name=last_name,
                country=country,
                marketing_consent=bool(consent),
                consent_source=self.consent_source if consent is not None else None,
                consent_at=self._now if consent else None,
            )
            return
        existing.email = email or existing.email
        existing.first_name = first_name or existing.first_name
        existing.last_name = last_name or existing.last_name
        existing.country = country or existing.country
        if consent is not None:
            existing.marketing_consent = consent
            existing.consent_source = self.consent_source
            existing.consent_at = self._now if consent else None

    def add_product(
        self, sku: str, name: str | None, price: float, currency: str, category: str | None
    ) -> None:
        product = self.batch.products.get(sku)
        if product is None:
            self.batch.products[sku] = ProductIn(
                sku=sku,
                name=name or sku,
                price=price,
                currency=currency,
                category=category or (category_for(name) if name else None),
            )
        else:
            product.price = price
            if name:
                product.name = name

    def add_line(
        self,
        order_key: str,
        customer_key: str,
        when: datetime,
        currency: str,
        sku: str,
        qty: int,
        price: float,
        *,
        is_return: bool = False,
    ) -> None:
        if is_return:
            n = self._return_lines[order_key] = self._return_lines.get(order_key, 0) + 1
            self.batch.returns.append(ReturnIn(order_key, n, customer_key, sku, qty, price, when))
            return
        order = self.batch.orders.get(order_key)
        if order is None:
            order = self.batch.orders[order_key] = OrderIn(order_key, customer_key, when, currency)
        elif order.customer_key != customer_key:
            raise RowError("customer", f"order {order_key} already belongs to customer {order.customer_key}")
        order.lines.append((sku, qty, price))
