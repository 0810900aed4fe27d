"""Shared row handling for order exports (Shopify, generic): one line item per row.

:class:`OrderAssembler` turns validated line items into customers/products/orders of an ImportBatch.
An order is one customer's, on one calendar day: a line that gives the same order id another customer
or another day is refused naming the order's first line (a column mapped as the order id that is not
one — a customer number, a date — shows up at once instead of merging a history into one order).
Identical lines (same order, product and unit price) are refused, or added up into one line's quantity
when the importer is told so (``--aggregate-duplicates``).
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime

from campaigns.ingest.base import RowError
from campaigns.ingest.categories import category_for
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn, ReturnIn

_TRUE = {"yes", "true", "1", "y", "subscribed", "opted_in"}
_FALSE = {"no", "false", "0", "n", "", "unsubscribed", "not_subscribed", "pending"}
_NOT_KEY = re.compile(r"[^\w]+")


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


def product_key_from_name(name: str) -> str:
    """A stable product key for a line without SKU: its name, lower-cased, words joined by "-".

    ``"Gift Wrap - Red"`` -> ``"gift-wrap-red"``. SKUs are stored upper-cased, so a name key (always
    lower-case) never collides with one. Keys longer than 100 characters end in a short hash.
    """
    key = _NOT_KEY.sub("-", name.casefold()).strip("-")
    digest = hashlib.sha256(name.strip().casefold().encode()).hexdigest()[:10]
    if not key:
        return f"name-{digest}"
    return key if len(key) <= 100 else f"{key[:88]}-{digest}"


class OrderAssembler:
    """Accumulates line items of one file into an ImportBatch.

    ``categorise`` fills missing categories from the demo keyword rules (``--categorise keywords``);
    ``aggregate_duplicates`` adds identical lines up instead of refusing them.
    """

    def __init__(
        self,
        source: str,
        consent_source: str,
        *,
        categorise: bool = False,
        aggregate_duplicates: bool = False,
        duplicate_hint: str = "",
    ) -> None:
        self.batch = ImportBatch(source=source)
        self.consent_source = consent_source
        self.categorise = categorise
        self.aggregate_duplicates = aggregate_duplicates
        self.duplicate_hint = duplicate_hint
        self.aggregated = 0
        # order key -> (first line, its day); (order key, sku, price) -> (line index, first line)
        self._first: dict[str, tuple[int, object]] = {}
        self._lines: dict[tuple[str, str, float | None], tuple[int, int]] = {}
        self._return_lines: dict[str, int] = {}

    def add_customer(
        self,
        key: str,
        *,
        email: str | None,
        first_name: str | None,
        last_name: str | None,
        country: str | None,
        consent: bool | None,
        consent_at: datetime | None = None,
        region: str | None = None,
        timezone: str | None = None,
        tags: list[str] | None = None,
    ) -> None:
        """Add or update a customer; a stated consent with a newer ``consent_at`` replaces an older one."""
        existing = self.batch.customers.get(key)
        if existing is None:
            self.batch.customers[key] = CustomerIn(
                external_id=key,
                email=email,
                first_name=first_name,
                last_name=last_name,
                country=country,
                region=region,
                timezone=timezone,
                marketing_consent=bool(consent),
                consent_source=self.consent_source if consent is not None else None,
                consent_at=consent_at if consent is not None else None,
                tags=tags,
            )
            return
        existing.email = email or existing.email
        existing.first_name = first_name or existing.first_name
        existing.last_name = last_name or existing.last_name
        existing.country = country or existing.country
        existing.region = region or existing.region
        existing.timezone = timezone or existing.timezone
        if tags is not None:
            existing.tags = tags
        newer = existing.consent_at is None or consent_at is None or consent_at >= existing.consent_at
        if consent is not None and newer:
            existing.marketing_consent = consent
            existing.consent_source = self.consent_source
            existing.consent_at = consent_at

    def add_product(
        self, sku: str, name: str | None, price: float | None, currency: str, category: str | None
    ) -> None:
        """Add a product the orders mention; the latest known price wins, a missing category stays missing
        unless the assembler categorises."""
        product = self.batch.products.get(sku)
        if category is None and self.categorise and name:
            category = category_for(name)
        if product is None:
            self.batch.products[sku] = ProductIn(
                sku=sku, name=name or sku, price=price, currency=currency, category=category
            )
            return
        if price is not None:
            product.price, product.currency = price, currency  # the latest price, in its own currency
        if name:
            product.name = name
        if category:
            product.category = category

    def add_line(
        self,
        line: int,
        order_key: str,
        customer_key: str,
        when: datetime,
        currency: str,
        sku: str,
        qty: int,
        price: float | None,
        *,
        is_return: bool = False,
        discount: float | None = None,
        order_column: str = "order",
    ) -> OrderIn | None:
        """Add one line item at file line ``line``; returns its order (None for a return).

        RowError (under ``order_column``) when the order id already belongs to another customer or day,
        or the line repeats an earlier one and duplicates are not aggregated.
        """
        if is_return:
            n = self._return_lines[order_key] = self._return_lines.get(order_key, 0) + 1
            self.batch.returns.append(ReturnIn(order_key, n, customer_key, sku, qty, price or 0.0, when))
            return None
        order = self.batch.orders.get(order_key)
        if order is None:
            order = self.batch.orders[order_key] = OrderIn(order_key, customer_key, when, currency)
            self._first[order_key] = (line, when.date())
        else:
            first_line, day = self._first[order_key]
            if order.customer_key != customer_key:
                raise RowError(
                    order_column,
                    f"order {order_key!r} is customer {order.customer_key!r}'s on line {first_line} but "
                    f"{customer_key!r}'s here: one order id, two customers",
                )
            if when.date() != day:
                raise RowError(
                    order_column,
                    f"order {order_key!r} is dated {day} on line {first_line} but {when.date()} here: "
                    "one order id, two days",
                )
        dup_key = (order_key, sku, price)
        seen = self._lines.get(dup_key)
        if seen is not None:
            index, first_line = seen
            if not self.aggregate_duplicates:
                raise RowError(
                    "(row)",
                    f"repeats line {first_line} (same order, product and price){self.duplicate_hint}",
                )
            old_sku, old_qty, old_price = order.lines[index]
            order.lines[index] = (old_sku, old_qty + qty, old_price)
            if discount:
                discounts = order.line_discounts = order.line_discounts or {}
                discounts[index] = discounts.get(index, 0.0) + discount
            self.aggregated += 1
            return order
        self._lines[dup_key] = (len(order.lines), line)
        if discount:
            order.line_discounts = order.line_discounts or {}
            order.line_discounts[len(order.lines)] = discount
        order.lines.append((sku, qty, price))
        return order
