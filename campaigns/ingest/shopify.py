"""Importer for Shopify's "orders export" CSV (one row per line item).

Order-level fields (Financial Status, Created at, Billing Name, Accepts Marketing ...) are only
filled on an order's first row; later rows of the same order (same ``Name``) inherit them.
Customers are keyed by email (lower-cased domain). Financial status decides what a row is:
paid / partially_paid / partially_refunded / authorized -> purchase; refunded -> return;
pending / voided / expired, or a non-empty ``Cancelled at`` -> set aside (counted).
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from campaigns.ingest.base import (
    ParseResult,
    Problems,
    Progress,
    RowError,
    clean_text,
    finish_import,
    open_csv,
    parse_datetime,
    parse_email,
    parse_float,
    parse_int,
    require_columns,
)
from campaigns.ingest.orders import OrderAssembler, parse_consent, split_name
from campaigns.store.records import ImportSummary

SOURCE = "shopify"
REQUIRED = (
    "Name", "Email", "Financial Status", "Created at", "Lineitem quantity", "Lineitem name", "Lineitem price",
    "Lineitem sku",
)  # fmt: skip
OPTIONAL = ("Currency", "Billing Name", "Billing Country", "Accepts Marketing", "Cancelled at", "Paid at")
PURCHASE = {"paid", "partially_paid", "partially_refunded", "authorized"}
RETURN = {"refunded"}
SET_ASIDE = {"pending", "voided", "expired"}
DATE_FORMATS = ("%Y-%m-%d %H:%M:%S %z", None)  # Shopify's export, then ISO 8601


def _shopify_date(value: str, column: str) -> object:
    last: RowError | None = None
    for fmt in DATE_FORMATS:
        try:
            return parse_datetime(value, column, fmt)
        except RowError as exc:
            last = exc
    assert last is not None
    raise RowError(column, f"is not a Shopify date (2024-03-01 10:15:42 +0100): {value.strip()[:40]!r}")


def parse_shopify(
    path: str | Path, *, currency: str = "GBP", keep_rejects: bool = False, categorise: bool = False
) -> ParseResult:
    csv_file = open_csv(path)
    idx = require_columns(csv_file, REQUIRED)
    opt = {c: csv_file.header.index(c) for c in OPTIONAL if c in csv_file.header}
    problems = Problems(str(path), keep_rows=keep_rejects)
    set_aside: Counter[str] = Counter()
    asm = OrderAssembler(SOURCE, consent_source="shopify:accepts-marketing", categorise=categorise)
    heads: dict[str, dict[str, object]] = {}  # order name -> order-level fields from its first row
    rows_read = 0

    def get(row: list[str], col: str) -> str:
        i = idx.get(col, opt.get(col))
        return row[i] if i is not None and i < len(row) else ""

    try:
        for line, row in csv_file.rows:
            rows_read += 1
            try:
                if len(row) != len(csv_file.header):
                    raise RowError("(row)", f"has {len(row)} fields, the header has {len(csv_file.header)}")
                name = clean_text(get(row, "Name"), "Name", required=True, max_len=128)
                assert name is not None
                head = heads.get(name)
                status = get(row, "Financial Status").strip().lower()
                if head is None:
                    if not status:
                        raise RowError("Financial Status", f"is empty on the first row of order {name}")
                    head = heads[name] = {
                        "status": status,
                        "created": _shopify_date(get(row, "Created at"), "Created at"),
                        "currency": (get(row, "Currency").strip().upper() or currency)[:3],
                        "billing": clean_text(get(row, "Billing Name"), "Billing Name", max_len=200),
                        "country": clean_text(get(row, "Billing Country"), "Billing Country", max_len=100),
                        "consent": parse_consent(get(row, "Accepts Marketing"), "Accepts Marketing")
                        if "Accepts Marketing" in opt
                        else None,
                        "cancelled": bool(get(row, "Cancelled at").strip()),
                    }
                email = parse_email(get(row, "Email"), "Email", required=True)
                assert email is not None
                qty = parse_int(get(row, "Lineitem quantity"), "Lineitem quantity")
                if qty <= 0:
                    raise RowError("Lineitem quantity", f"must be positive, got {qty}")
                price = parse_float(get(row, "Lineitem price"), "Lineitem price")
                if price < 0:
                    raise RowError("Lineitem price", f"must not be negative, got {price}")
                product_name = clean_text(get(row, "Lineitem name"), "Lineitem name", required=True)
                sku = clean_text(get(row, "Lineitem sku"), "Lineitem sku", max_len=128)
                if sku is None:
                    raise RowError("Lineitem sku", "is empty (Retain keys products by SKU)")
                sku = sku.upper()
            except RowError as exc:
                problems.add(line, exc, row)
                continue
            status = str(head["status"])
            if head["cancelled"] or status in SET_ASIDE:
                set_aside[f"order_{'cancelled' if head['cancelled'] else status}"] += 1
                continue
            if status not in PURCHASE | RETURN:
                problems.add(line, RowError("Financial Status", f"unknown status {status!r}"), row)
                continue
            first, last = split_name(head["billing"])  # type: ignore[arg-type]
            asm.add_customer(
                email,
                email=email,
                first_name=first,
                last_name=last,
                country=head["country"],  # type: ignore[arg-type]
                consent=head["consent"],  # type: ignore[arg-type]
            )
            cur = str(head["currency"])
            asm.add_product(sku, product_name, price, cur, None)
            try:
                asm.add_line(
                    line,
                    f"shopify:{name}",
                    email,
                    head["created"],
                    cur,
                    sku,
                    qty,
                    price,  # type: ignore[arg-type]
                    is_return=status in RETURN,
                    order_column="Name",
                )
            except RowError as exc:
                problems.add(line, exc, row)
                continue
            if status in RETURN:
                set_aside["refunded_kept_as_return"] += 1
    finally:
        csv_file.close()
    if rows_read == 0:
        problems.add_file_error("has a header but no rows")
    return ParseResult(asm.batch, rows_read, set_aside, problems, csv_file.header)


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
