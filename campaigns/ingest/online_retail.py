"""Importer for the UCI Online Retail file (``data/online_retail.csv.gz``).

The file's known shape is handled by cleaning rules, not treated as errors; the summary reports
how many lines each rule set aside (see docs/import.md):

- ``no_customer_id``: lines without CustomerID (cannot be attributed to anyone);
- cancellations (InvoiceNo starting with "C") with a customer become **returns**, kept apart;
- ``adjustment_invoice``: "A..." bad-debt adjustments;
- ``non_product_code``: POST, D, M, C2, DOT, BANK CHARGES, AMAZONFEE, S, PADS, CRUK, B;
- ``non_positive_quantity`` / ``non_positive_price``: stock adjustments and free items.

Stock codes are upper-cased, so "85123a" and "85123A" are one product (on this file the
lower-case codes only occur on lines without CustomerID, so 3,659 products remain either way).
The data has no names or emails: each customer gets a deterministic demo identity
(``customer-<id>@example.com``, a seeded first and last name, the real country and its timezone),
marked ``is_demo`` with marketing consent from source ``demo-import``.
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from campaigns.ingest.base import (
    MAX_QUANTITY,
    ParseResult,
    Problems,
    Progress,
    RowError,
    clean_text,
    finish_import,
    open_csv,
    parse_datetime,
    parse_float,
    parse_int,
    require_columns,
)
from campaigns.ingest.categories import category_for
from campaigns.store.base import utcnow
from campaigns.store.records import CustomerIn, ImportBatch, ImportSummary, OrderIn, ProductIn, ReturnIn

SOURCE = "online-retail"
COLUMNS = (
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
)
NON_PRODUCT_CODES = frozenset(
    {"POST", "D", "M", "C2", "DOT", "BANK CHARGES", "AMAZONFEE", "S", "PADS", "CRUK", "B"}
)
CURRENCY = "GBP"
DEMO_DOMAIN = "example.com"
DEMO_CONSENT_SOURCE = "demo-import"
PRODUCT_URL = "https://shop.example.com/products/{sku}"

FIRST_NAMES = (
    "Olivia", "Amelia", "Isla", "Ava", "Mia", "Ivy", "Lily", "Isabella", "Rosie", "Sophia", "Grace", "Freya",
    "Noah", "Oliver", "George", "Arthur", "Muhammad", "Leo", "Harry", "Oscar", "Archie", "Henry", "Theodore",
    "Jack", "Chloé", "Léa", "Manon", "Lukas", "Emma", "Hannah", "Lars", "Ingrid", "Sofía", "Mateo", "Giulia",
    "Marco", "Aoife", "Seán", "Yuki", "Hiroshi", "Zofia", "Jakub", "Inês", "João", "Anika", "Daan", "Elif", "Omar",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Patel", "Wright", "Walker",
    "Martin", "Dubois", "Müller", "Schmidt", "Jensen", "Hansen", "García", "Rossi", "Murphy", "Kelly", "Sato",
    "Nowak", "Silva", "de Vries", "Janssens", "Novák", "Nielsen", "Andersson", "Virtanen", "Papadopoulos", "Cohen",
)  # fmt: skip

#: country in the file -> IANA timezone (capital city); "Unspecified"/"European Community" -> None (shop's zone)
COUNTRY_TIMEZONES = {
    "United Kingdom": "Europe/London", "France": "Europe/Paris", "Australia": "Australia/Sydney",
    "Netherlands": "Europe/Amsterdam", "Germany": "Europe/Berlin", "Norway": "Europe/Oslo", "EIRE": "Europe/Dublin",
    "Switzerland": "Europe/Zurich", "Spain": "Europe/Madrid", "Poland": "Europe/Warsaw", "Portugal": "Europe/Lisbon",
    "Italy": "Europe/Rome", "Belgium": "Europe/Brussels", "Lithuania": "Europe/Vilnius", "Japan": "Asia/Tokyo",
    "Iceland": "Atlantic/Reykjavik", "Channel Islands": "Europe/Jersey", "Denmark": "Europe/Copenhagen",
    "Cyprus": "Asia/Nicosia", "Sweden": "Europe/Stockholm", "Austria": "Europe/Vienna", "Israel": "Asia/Jerusalem",
    "Finland": "Europe/Helsinki", "Bahrain": "Asia/Bahrain", "Greece": "Europe/Athens", "Hong Kong": "Asia/Hong_Kong",
    "Singapore": "Asia/Singapore", "Lebanon": "Asia/Beirut", "United Arab Emirates": "Asia/Dubai",
    "Saudi Arabia": "Asia/Riyadh", "Czech Republic": "Europe/Prague", "Canada": "America/Toronto",
    "Brazil": "America/Sao_Paulo", "USA": "America/New_York", "Malta": "Europe/Malta", "RSA": "Africa/Johannesburg",
}  # fmt: skip


def demo_identity(customer_id: str) -> tuple[str, str, str]:
    """(email, first name, last name) for a demo customer: deterministic, under an RFC 2606 domain."""
    digest = hashlib.sha256(customer_id.encode()).digest()
    first = FIRST_NAMES[int.from_bytes(digest[:4], "big") % len(FIRST_NAMES)]
    last = LAST_NAMES[int.from_bytes(digest[4:8], "big") % len(LAST_NAMES)]
    return f"customer-{customer_id}@{DEMO_DOMAIN}", first, last


def parse_online_retail(
    path: str | Path, *, keep_rejects: bool = False, progress: Progress | None = None
) -> ParseResult:
    """Read and validate the whole file into an ImportBatch (nothing is written here)."""
    csv_file = open_csv(path)
    idx = require_columns(csv_file, COLUMNS)
    i_inv, i_sku, i_desc, i_qty, i_date, i_price, i_cust, i_country = (idx[c] for c in COLUMNS)
    width = max(idx.values()) + 1
    problems = Problems(str(path), keep_rows=keep_rejects)
    set_aside: Counter[str] = Counter()
    batch = ImportBatch(source=SOURCE)
    customers, products, orders, returns = batch.customers, batch.products, batch.orders, batch.returns
    return_lines: Counter[str] = Counter()
    now = utcnow()
    dates: dict[str, datetime] = {}  # the file repeats one timestamp per invoice: parse it once
    rows_read = 0
    try:
        for line, row in csv_file.rows:
            rows_read += 1
            if progress and rows_read % 50_000 == 0:
                progress(50_000)
            if len(row) < width:
                problems.add(line, RowError("(row)", f"has {len(row)} fields, expected {len(COLUMNS)}"), row)
                continue
            try:
                invoice = row[i_inv].strip()
                if not invoice:
                    raise RowError("InvoiceNo", "is empty")
                sku = row[i_sku].strip().upper()
                if not sku:
                    raise RowError("StockCode", "is empty")
                qty = parse_int(row[i_qty], "Quantity", MAX_QUANTITY)
                raw_date = row[i_date]
                when = dates.get(raw_date)
                if when is None:
                    when = dates[raw_date] = parse_datetime(raw_date, "InvoiceDate")
                price = parse_float(row[i_price], "UnitPrice")
                cust_raw = row[i_cust].strip()
                cust = str(parse_int(cust_raw, "CustomerID")) if cust_raw else ""
                desc = clean_text(row[i_desc], "Description")
                country = clean_text(row[i_country], "Country", max_len=100)
            except RowError as exc:
                problems.add(line, exc, row)
                continue

            if not cust:
                set_aside["no_customer_id"] += 1
                continue
            if invoice[0] == "A":
                set_aside["adjustment_invoice"] += 1
                continue
            if sku in NON_PRODUCT_CODES:
                set_aside["non_product_code"] += 1
                continue
            cancellation = invoice[0] == "C"
            if not cancellation and qty <= 0:
                set_aside["non_positive_quantity"] += 1
                continue
            if price <= 0:
                set_aside["non_positive_price"] += 1
                continue

            if cust not in customers:
                email, first, last = demo_identity(cust)
                customers[cust] = CustomerIn(
                    external_id=cust,
                    email=email,
                    first_name=first,
                    last_name=last,
                    country=country,
                    timezone=COUNTRY_TIMEZONES.get(country or ""),
                    marketing_consent=True,
                    consent_source=DEMO_CONSENT_SOURCE,
                    consent_at=now,
                    is_demo=True,
                )
            product = products.get(sku)
            if product is None:
                products[sku] = ProductIn(
                    sku=sku,
                    name=desc or sku,
                    price=price,
                    currency=CURRENCY,
                    url=PRODUCT_URL.format(sku=sku),
                    category=category_for(desc or ""),
                )
            elif not cancellation:
                product.price = price  # the latest price wins
                if desc and product.name == sku:
                    product.name, product.category = desc, category_for(desc)

            if cancellation:
                return_lines[invoice] += 1
                returns.append(ReturnIn(invoice, return_lines[invoice], cust, sku, abs(qty), price, when))
                set_aside["cancellation_kept_as_return"] += 1
                continue
            order = orders.get(invoice)
            if order is None:
                order = orders[invoice] = OrderIn(invoice, cust, when, CURRENCY)
            elif order.customer_key != cust:
                problems.add(
                    line,
                    RowError(
                        "CustomerID", f"invoice {invoice} already belongs to customer {order.customer_key}"
                    ),
                    row,
                )
                continue
            order.lines.append((sku, qty, price))
    finally:
        csv_file.close()
    if rows_read == 0:
        problems.add_file_error("has a header but no rows")
    return ParseResult(batch, rows_read, set_aside, problems, csv_file.header)


def import_online_retail(
    store: object,
    path: str | Path,
    *,
    skip_invalid: bool = False,
    rejects_path: Path | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Validate then import the file in one transaction; raises ImportValidationError (nothing written)."""
    started = time.perf_counter()
    parsed = parse_online_retail(path, keep_rejects=skip_invalid, progress=progress)
    return finish_import(
        store, path, parsed, skip_invalid=skip_invalid, rejects_path=rejects_path, started=started
    )
