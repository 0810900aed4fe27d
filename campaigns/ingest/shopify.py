"""Importer for Shopify's orders export (Admin > Orders > Export: one row per line item), as Shopify writes it.

Shopify fills an order's own columns (Email, Financial Status, Paid at, Accepts Marketing, Currency,
Subtotal, Total, Discount Code, Discount Amount, Billing ..., Cancelled at, Refunded Amount ...) only on
its **first** row; later rows of the order (same ``Name``) carry only the line item. Every order-level
value is read from the order's first row and applies to all its lines; a later row that repeats one must
agree with it. The rules (docs/import.md has the table):

- **Who**: the customer is the whole address lower-cased (``BEN@example.com`` = ``ben@example.com``); the
  address is kept as last written for display. Orders without an email (point of sale) are set aside.
  The timezone comes from Billing (else Shipping) Country and Province (campaigns/ingest/timezones.py).
- **Consent**: ``Accepts Marketing`` yes/no, dated by the order's ``Created at``
  (source ``shopify:accepts-marketing``); a later decision wins over an older one.
- **Status** (Shopify's financial statuses): paid, partially_paid, authorized, partially_refunded ->
  purchase; refunded -> its lines are kept as returns; pending, voided, expired, or any order with
  ``Cancelled at`` -> set aside. A partial refund keeps the purchase and records ``Refunded Amount``.
- **Lines without SKU**: tips (``Tip``) and gift cards (a name with "gift card") are not products: set
  aside as ``non_product_line``. Other lines without SKU (custom items) are kept under a product key made
  from their name (campaigns/ingest/orders.py: ``product_key_from_name``). SKUs are upper-cased.
- **Money**: each order keeps its own ``Currency``; ``Discount Code``/``Discount Amount`` and ``Lineitem
  discount`` are stored with the order and line. Identical line items of one order are added up.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from campaigns.ingest.base import (
    MAX_QUANTITY,
    OutOfRange,
    ParseResult,
    Problems,
    Progress,
    RowError,
    clean_text,
    finish_import,
    identity_key,
    open_csv,
    parse_datetime,
    parse_email,
    parse_float,
    parse_int,
    parsed_file,
    require_columns,
)
from campaigns.ingest.orders import OrderAssembler, parse_consent, product_key_from_name, split_name
from campaigns.ingest.timezones import timezone_for
from campaigns.store.records import ImportSummary

SOURCE = "shopify"
REQUIRED = (
    "Name", "Email", "Financial Status", "Created at", "Lineitem quantity", "Lineitem name", "Lineitem price",
)  # fmt: skip
PURCHASE = {"paid", "partially_paid", "partially_refunded", "authorized"}
RETURN = {"refunded"}
SET_ASIDE = {"pending", "voided", "expired"}
#: order-level columns: taken from the order's first row (a later row may repeat them, never contradict)
ORDER_COLUMNS = (
    "Email", "Financial Status", "Created at", "Currency", "Accepts Marketing", "Billing Name", "Billing Country",
    "Billing Province", "Shipping Name", "Shipping Country", "Shipping Province", "Cancelled at", "Discount Code",
    "Discount Amount", "Refunded Amount",
)  # fmt: skip
CONSENT_COLUMNS = ("Accepts Marketing", "Accepts Email Marketing")
NON_PRODUCT = re.compile(r"^\s*tip\b|gift\s*card", re.IGNORECASE)
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S %z", None)  # Shopify's export, then ISO 8601


def _shopify_date(value: str, column: str) -> datetime:
    for fmt in DATE_FORMATS:
        try:
            return parse_datetime(value, column, fmt)
        except OutOfRange:
            raise
        except RowError:
            continue
    raise RowError(column, f"is not a Shopify date (2024-03-01 10:15:42 +0100): {value.strip()[:40]!r}")


def _money(value: str, column: str) -> float | None:
    return parse_float(value, column) if value.strip() else None


class _Head:
    """An order's own fields, from its first row."""

    def __init__(self, line: int, get: dict[str, str], consent_col: str | None) -> None:
        self.line = line
        self.raw = get
        self.status = get["Financial Status"].strip().lower()
        if not self.status:
            raise RowError("Financial Status", "is empty on the order's first row")
        self.created = _shopify_date(get["Created at"], "Created at")
        self.currency = (get["Currency"].strip().upper() or "")[:3]
        email = parse_email(get["Email"], "Email")
        self.email = email
        self.consent = (
            parse_consent(get[consent_col], consent_col) if consent_col and get[consent_col].strip() else None
        )
        name = clean_text(get["Billing Name"], "Billing Name", max_len=200) or clean_text(
            get["Shipping Name"], "Shipping Name", max_len=200
        )
        self.first_name, self.last_name = split_name(name)
        self.country = clean_text(get["Billing Country"], "Billing Country", max_len=100) or clean_text(
            get["Shipping Country"], "Shipping Country", max_len=100
        )
        self.region = clean_text(get["Billing Province"], "Billing Province", max_len=100) or clean_text(
            get["Shipping Province"], "Shipping Province", max_len=100
        )
        self.cancelled = bool(get["Cancelled at"].strip())
        codes = clean_text(get["Discount Code"], "Discount Code", max_len=500)
        self.discount_codes = codes
        self.discount_amount = _money(get["Discount Amount"], "Discount Amount")
        self.refunded_amount = _money(get["Refunded Amount"], "Refunded Amount")


def parse_shopify(
    path: str | Path, *, currency: str = "GBP", keep_rejects: bool = False, categorise: bool = False
) -> ParseResult:
    csv_file = open_csv(path)
    idx = require_columns(csv_file, REQUIRED)
    header = csv_file.header
    pos = {
        c: header.index(c)
        for c in (*ORDER_COLUMNS, *CONSENT_COLUMNS, "Lineitem sku", "Lineitem discount")
        if c in header
    }
    consent_col = next((c for c in CONSENT_COLUMNS if c in pos), None)
    problems = Problems(str(path), keep_rows=keep_rejects)
    set_aside: Counter[str] = Counter()
    asm = OrderAssembler(
        SOURCE, consent_source="shopify:accepts-marketing", categorise=categorise, aggregate_duplicates=True
    )
    heads: dict[
        str, _Head | int
    ] = {}  # order name -> its first row's fields (the line number: it was refused)
    last_name: str | None = None

    def cell(row: list[str], col: str) -> str:
        i = idx.get(col, pos.get(col))
        return row[i] if i is not None and i < len(row) else ""

    try:
        for line, row in csv_file.well_formed(problems):
            try:
                name = clean_text(cell(row, "Name"), "Name", required=True, max_len=120)
                assert name is not None
                seen = heads.get(name)
                if seen is not None and name != last_name:
                    start = seen if isinstance(seen, int) else seen.line
                    raise RowError(
                        "Name",
                        f"order {name} appears again after other orders (its rows start on line {start}): "
                        "is the file two exports in one?",
                    )
                last_name = name
                if seen is None:
                    heads[name] = line
                    order_fields = {c: cell(row, c) for c in (*ORDER_COLUMNS, *CONSENT_COLUMNS)}
                    heads[name] = seen = _Head(line, order_fields, consent_col)
                if isinstance(seen, int):
                    raise RowError(
                        "Name", f"order {name}: its first line {seen} was refused, so this line is too"
                    )
                head = seen
                for col in ("Email", "Financial Status", "Currency"):
                    value = cell(row, col).strip()
                    if value and head.line != line and value.lower() != head.raw[col].strip().lower():
                        raise RowError(
                            col,
                            f"{value!r} contradicts {head.raw[col].strip()!r} on the order's first line {head.line}",
                        )
                qty = parse_int(cell(row, "Lineitem quantity"), "Lineitem quantity", MAX_QUANTITY)
                if qty <= 0:
                    raise RowError("Lineitem quantity", f"must be positive, got {qty}")
                price = parse_float(cell(row, "Lineitem price"), "Lineitem price")
                if price < 0:
                    raise RowError("Lineitem price", f"must not be negative, got {price}")
                product_name = clean_text(cell(row, "Lineitem name"), "Lineitem name", required=True)
                assert product_name is not None
                sku = clean_text(cell(row, "Lineitem sku"), "Lineitem sku", max_len=128)
                discount = _money(cell(row, "Lineitem discount"), "Lineitem discount")
            except RowError as exc:
                problems.add(line, exc, row)
                continue
            if head.cancelled or head.status in SET_ASIDE:
                set_aside[f"order_{'cancelled' if head.cancelled else head.status}"] += 1
                continue
            if head.status not in PURCHASE | RETURN:
                known = ", ".join(sorted(PURCHASE | RETURN | SET_ASIDE))
                problems.add(
                    line,
                    RowError("Financial Status", f"unknown status {head.status!r} (known: {known})"),
                    row,
                )
                continue
            if head.email is None:
                set_aside["order_without_email"] += 1
                continue
            if sku is None and NON_PRODUCT.search(product_name):
                set_aside["non_product_line"] += 1
                continue
            key = sku.upper() if sku else product_key_from_name(product_name)
            customer = identity_key(head.email)
            cur = head.currency or currency
            asm.add_customer(
                customer,
                email=head.email,
                first_name=head.first_name,
                last_name=head.last_name,
                country=head.country,
                region=head.region,
                timezone=timezone_for(head.country, head.region),
                consent=head.consent,
                consent_at=head.created,
            )
            asm.add_product(key, product_name, price, cur, None)
            order = asm.add_line(
                line,
                f"shopify:{name}",
                customer,
                head.created,
                cur,
                key,
                qty,
                price,
                is_return=head.status in RETURN,
                discount=discount,
                order_column="Name",
            )
            if order is None:
                set_aside["refunded_kept_as_return"] += 1
                continue
            order.financial_status = head.status
            order.discount_codes = head.discount_codes
            order.discount_amount = head.discount_amount
            order.refunded_amount = head.refunded_amount
    finally:
        csv_file.close()
    if asm.aggregated:
        set_aside["identical_line_items_added_up"] = asm.aggregated
    return parsed_file(csv_file, asm.batch, problems, set_aside)


def import_shopify(
    store: object,
    path: str | Path,
    *,
    currency: str = "GBP",
    skip_invalid: bool = False,
    rejects_path: Path | None = None,
    progress: Progress | None = None,
    categorise: bool = False,
) -> ImportSummary:
    started = time.perf_counter()
    parsed = parse_shopify(path, currency=currency, keep_rejects=skip_invalid, categorise=categorise)
    return finish_import(
        store, path, parsed, skip_invalid=skip_invalid, rejects_path=rejects_path, started=started
    )
