"""Importer for any order-lines CSV, given a column mapping.

``--map customer=CustomerId,order=OrderNo,sku=Sku,date=OrderDate,qty=Qty,price=UnitPrice`` names the
required columns; optional fields: ``email``, ``first_name``, ``last_name``, ``name`` (full name),
``country``, ``product_name``, ``category``, ``currency``, ``consent`` (yes/no). Dates are ISO 8601
unless ``--date-format`` gives a strptime format; ``--delimiter`` sets the separator.
Quantities must be positive (returns are not read from generic files); prices must not be negative.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path

from campaigns.errors import ConfigError
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

SOURCE = "generic"
REQUIRED_FIELDS = ("customer", "order", "sku", "date", "qty", "price")
OPTIONAL_FIELDS = (
    "email", "first_name", "last_name", "name", "country", "product_name", "category", "currency", "consent",
)  # fmt: skip


def parse_mapping(spec: str) -> dict[str, str]:
    """``"customer=Cust,order=Order,..."`` -> ``{"customer": "Cust", ...}``; ConfigError on a bad spec."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        field, sep, column = part.partition("=")
        field = field.strip()
        if not sep or not column.strip():
            raise ConfigError(f"--map: {part!r} is not field=column")
        if field not in REQUIRED_FIELDS + OPTIONAL_FIELDS:
            known = ", ".join(REQUIRED_FIELDS + OPTIONAL_FIELDS)
            raise ConfigError(f"--map: unknown field {field!r} (known: {known})")
        mapping[field] = column.strip()
    missing = [f for f in REQUIRED_FIELDS if f not in mapping]
    if missing:
        raise ConfigError(f"--map must name a column for {', '.join(missing)} (e.g. sku=ProductCode)")
    return mapping


def parse_generic(
    path: str | Path,
    mapping: dict[str, str],
    *,
    delimiter: str = ",",
    date_format: str | None = None,
    currency: str = "GBP",
    keep_rejects: bool = False,
) -> ParseResult:
    if len(delimiter) != 1:
        raise ConfigError(f"--delimiter must be one character, got {delimiter!r}")
    csv_file = open_csv(path, delimiter=delimiter)
    idx = require_columns(csv_file, list(mapping.values()), delimiter=delimiter)
    col = {field: idx[column] for field, column in mapping.items()}
    problems = Problems(str(path), keep_rows=keep_rejects)
    asm = OrderAssembler(SOURCE, consent_source="import:generic")
    rows_read = 0

    def get(row: list[str], field: str) -> str:
        return row[col[field]] if field in col else ""

    def name_of(field: str) -> str:
        return mapping[field]

    try:
        for line, row in csv_file.rows:
            rows_read += 1
            try:
                if len(row) != len(csv_file.header):
                    raise RowError("(row)", f"has {len(row)} fields, the header has {len(csv_file.header)}")
                asm.check_duplicate(line, row)
                customer = clean_text(get(row, "customer"), name_of("customer"), required=True, max_len=128)
                order = clean_text(get(row, "order"), name_of("order"), required=True, max_len=128)
                sku = clean_text(get(row, "sku"), name_of("sku"), required=True, max_len=128)
                when = parse_datetime(get(row, "date"), name_of("date"), date_format)
                qty = parse_int(get(row, "qty"), name_of("qty"))
                if qty <= 0:
                    raise RowError(name_of("qty"), f"must be positive, got {qty}")
                price = parse_float(get(row, "price"), name_of("price"))
                if price < 0:
                    raise RowError(name_of("price"), f"must not be negative, got {price}")
                email = parse_email(get(row, "email"), name_of("email")) if "email" in col else None
                first = (
                    clean_text(get(row, "first_name"), name_of("first_name"), max_len=200)
                    if "first_name" in col
                    else None
                )
                last = (
                    clean_text(get(row, "last_name"), name_of("last_name"), max_len=200)
                    if "last_name" in col
                    else None
                )
                if "name" in col and not (first or last):
                    first, last = split_name(clean_text(get(row, "name"), name_of("name"), max_len=400))
                country = (
                    clean_text(get(row, "country"), name_of("country"), max_len=100)
                    if "country" in col
                    else None
                )
                product_name = (
                    clean_text(get(row, "product_name"), name_of("product_name"))
                    if "product_name" in col
                    else None
                )
                category = (
                    clean_text(get(row, "category"), name_of("category"), max_len=200)
                    if "category" in col
                    else None
                )
                cur = (
                    (clean_text(get(row, "currency"), name_of("currency"), max_len=3) or currency)
                    if "currency" in col
                    else currency
                )
                consent = parse_consent(get(row, "consent"), name_of("consent")) if "consent" in col else None
                assert customer and order and sku
                asm.add_customer(
                    customer, email=email, first_name=first, last_name=last, country=country, consent=consent
                )
                asm.add_product(sku.upper(), product_name, price, cur.upper(), category)
                asm.add_line(order, customer, when, cur.upper(), sku.upper(), qty, price)
            except RowError as exc:
                problems.add(line, exc, row)
    finally:
        csv_file.close()
    if rows_read == 0:
        problems.add_file_error("has a header but no rows")
    return ParseResult(asm.batch, rows_read, Counter(), problems, csv_file.header)


def import_generic(
    store: object,
    path: str | Path,
    mapping: dict[str, str],
    *,
    delimiter: str = ",",
    date_format: str | None = None,
    currency: str = "GBP",
    skip_invalid: bool = False,
    rejects_path: Path | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    started = time.perf_counter()
    parsed = parse_generic(
        path,
        mapping,
        delimiter=delimiter,
        date_format=date_format,
        currency=currency,
        keep_rejects=skip_invalid,
    )
    return finish_import(
        store, path, parsed, skip_invalid=skip_invalid, rejects_path=rejects_path, started=started
    )
