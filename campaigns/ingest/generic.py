"""Importer for any order-lines CSV, given a column mapping (``retain import orders --format generic``).

``--map field=column,...`` names the file's columns (with ``--no-header``: 1-based column numbers).

- **who**: ``customer`` (the shop's customer id) and/or ``email`` — without ``customer`` the customer is
  the whole address lower-cased; optional ``first_name``, ``last_name``, ``name`` (full name), ``country``,
  ``region`` (province/state code: with the country it gives the customer's timezone), ``consent`` (yes/no).
- **what**: ``sku`` and/or ``product_name`` — a line without SKU gets a product key from its name;
  optional ``category`` (no category is invented unless ``--categorise keywords``), ``currency``.
- **when**: ``date`` (ISO 8601 unless ``--date-format``).
- **which order**: ``order``, or no order column and ``--basket-by customer,date`` (one order per customer
  per calendar day) / ``--basket-by customer,datetime`` (per exact timestamp).
- **how many / how much**: ``qty`` (default 1 per line) and ``price`` — the unit price, or the line's total
  with ``--price-is line-total``. A file without a price column imports with unknown prices (NULL): orders
  and products count, revenue does not. Decimal commas are detected or set with ``--decimal``.

Identical lines (same order, product and price) are refused unless ``--aggregate-duplicates`` adds them
up into quantity. Quantities must be positive (returns are not read from generic files), prices must not
be negative. Every error is ``file:line: column: what`` and names the option that fixes it.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from campaigns.errors import ConfigError
from campaigns.ingest.base import (
    MAX_QUANTITY,
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
    require_columns,
)
from campaigns.ingest.numbers import NumberFormat
from campaigns.ingest.orders import OrderAssembler, parse_consent, product_key_from_name, split_name
from campaigns.ingest.timezones import timezone_for
from campaigns.store.records import ImportSummary

SOURCE = "generic"
FIELDS = (
    "customer", "order", "sku", "date", "qty", "price", "email", "first_name", "last_name", "name", "country",
    "region", "product_name", "category", "currency", "consent",
)  # fmt: skip
BASKET_BY = ("customer,date", "customer,datetime")
PRICE_IS = ("unit", "line-total")
CATEGORISE = ("keywords",)
#: rows read before importing to settle the decimal separator (see campaigns/ingest/numbers.py)
SNIFF_ROWS = 20_000
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_DUPLICATE_HINT = "; pass --aggregate-duplicates to add them up into one line's quantity, or remove one"


def parse_mapping(spec: str) -> dict[str, str]:
    """``"customer=Cust,order=Order,..."`` -> ``{"customer": "Cust", ...}``; ConfigError on a bad spec."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, column = part.partition("=")
        name = name.strip()
        if not sep or not column.strip():
            raise ConfigError(f"--map: {part!r} is not field=column")
        if name not in FIELDS:
            raise ConfigError(f"--map: unknown field {name!r} (known: {', '.join(FIELDS)})")
        if name in mapping:
            raise ConfigError(f"--map: field {name!r} is mapped twice")
        mapping[name] = column.strip()
    return mapping


@dataclass(frozen=True)
class GenericOptions:
    """How to read one generic file (each field is the CLI option of the same name)."""

    mapping: dict[str, str]
    delimiter: str = ","
    date_format: str | None = None
    currency: str = "GBP"
    header: bool = True
    basket_by: str | None = None
    aggregate_duplicates: bool = False
    price_is: str = "unit"
    decimal: str | None = None
    categorise: str | None = None

    def check(self) -> None:
        """ConfigError naming the option for anything that cannot work, before the file is opened."""
        m = self.mapping
        if len(self.delimiter) != 1:
            raise ConfigError(f"--delimiter must be one character, got {self.delimiter!r}")
        if "date" not in m:
            raise ConfigError("--map must name the date column (date=OrderDate)")
        if "customer" not in m and "email" not in m:
            raise ConfigError("--map must name a customer column (customer=CustomerId) or an email column")
        if "sku" not in m and "product_name" not in m:
            raise ConfigError("--map must name a product column: sku=Sku and/or product_name=Description")
        if self.basket_by is not None:
            if self.basket_by not in BASKET_BY:
                raise ConfigError(
                    f"--basket-by must be one of {', '.join(BASKET_BY)}, got {self.basket_by!r}"
                )
            if "order" in m:
                raise ConfigError(
                    "--basket-by builds the order ids: drop order= from --map, or drop --basket-by"
                )
        elif "order" not in m:
            raise ConfigError(
                "--map names no order column (order=OrderNo); a file without order ids needs "
                "--basket-by customer,date (one order per customer per day)"
            )
        if self.price_is not in PRICE_IS:
            raise ConfigError(f"--price-is must be one of {', '.join(PRICE_IS)}, got {self.price_is!r}")
        if self.price_is == "line-total" and "price" not in m:
            raise ConfigError("--price-is line-total needs a price column in --map (price=LineTotal)")
        if self.decimal not in (None, ".", ","):
            raise ConfigError(f"--decimal must be '.' or ',', got {self.decimal!r}")
        if self.categorise not in (None, *CATEGORISE):
            raise ConfigError(f"--categorise must be one of {', '.join(CATEGORISE)}, got {self.categorise!r}")
        if not _CURRENCY.match(self.currency):
            raise ConfigError(
                f"--currency must be a three-letter ISO code such as EUR, got {self.currency!r}"
            )
        if not self.header:
            bad = [f"{k}={v}" for k, v in m.items() if not (v.isdigit() and int(v) >= 1)]
            if bad:
                raise ConfigError(
                    f"--no-header: --map takes column numbers (1 = the first column), not {', '.join(bad)}"
                )


def _sniff_decimal(path: str | Path, opts: GenericOptions) -> NumberFormat:
    """The file's decimal separator, from its first rows' price and quantity values (when not set)."""
    numbers = NumberFormat(opts.decimal)
    if opts.decimal is not None:
        return numbers
    csv_file = open_csv(path, delimiter=opts.delimiter, header=opts.header)
    try:
        cols = [csv_file.header.index(opts.mapping[f]) for f in ("price", "qty") if f in opts.mapping]
        cols = [c for c in cols if c >= 0]
        for n, (line, row) in enumerate(csv_file.rows):
            if n >= SNIFF_ROWS or numbers.decimal is not None:
                break
            for c in cols:
                if c < len(row):
                    numbers.observe(row[c], line)
    except ValueError:
        pass  # a mapped column is missing: the main pass reports it
    finally:
        csv_file.close()
    return numbers


def parse_generic(
    path: str | Path, opts: GenericOptions, *, keep_rejects: bool = False, progress: Progress | None = None
) -> ParseResult:
    opts.check()
    numbers = _sniff_decimal(path, opts)
    csv_file = open_csv(path, delimiter=opts.delimiter, header=opts.header)
    mapping = opts.mapping
    if opts.header:
        idx = require_columns(csv_file, list(mapping.values()), delimiter=opts.delimiter, options=mapping)
        col = {f: idx[c] for f, c in mapping.items()}
    else:
        col = {f: int(c) - 1 for f, c in mapping.items()}
    width = max(col.values()) + 1
    label = {f: (c if opts.header else f"column {c} ({f})") for f, c in mapping.items()}
    problems = Problems(str(path), keep_rows=keep_rejects)
    asm = OrderAssembler(
        SOURCE,
        consent_source="import:generic",
        categorise=opts.categorise == "keywords",
        aggregate_duplicates=opts.aggregate_duplicates,
        duplicate_hint=_DUPLICATE_HINT,
    )
    order_label = label.get("order", "--basket-by")
    dates: dict[str, datetime] = {}  # exports repeat one timestamp per order: parse it once
    has = set(col)
    rows_read = 0

    def text(row: list[str], name: str, max_len: int = 200, *, required: bool = False) -> str | None:
        return (
            clean_text(row[col[name]], label[name], max_len=max_len, required=required)
            if name in has
            else None
        )

    try:
        for line, row in csv_file.rows:
            rows_read += 1
            if progress and rows_read % 50_000 == 0:
                progress(50_000)
            try:
                if len(row) < width or (opts.header and len(row) != len(csv_file.header)):
                    expected = len(csv_file.header) if opts.header else f"at least {width}"
                    raise RowError("(row)", f"has {len(row)} fields, the header has {expected}")
                email = parse_email(row[col["email"]], label["email"]) if "email" in has else None
                customer = text(row, "customer", 128)
                if customer is None:
                    if email is None:
                        which = label.get("customer", label.get("email"))
                        raise RowError(str(which), "is empty: the line has no customer")
                    customer = identity_key(email)
                raw_date = row[col["date"]]
                when = dates.get(raw_date)
                if when is None:
                    when = dates[raw_date] = parse_datetime(
                        raw_date, label["date"], opts.date_format, hint=True
                    )
                sku = text(row, "sku", 128)
                product_name = text(row, "product_name", 500)
                if sku is not None:
                    sku = sku.upper()
                elif product_name is not None:
                    sku = product_key_from_name(product_name)
                else:
                    which = label.get("sku", label.get("product_name"))
                    raise RowError(str(which), "is empty: the line names no product")
                qty = 1
                if "qty" in has:
                    value = numbers.parse(row[col["qty"]], label["qty"], line, MAX_QUANTITY)
                    if value != int(value):
                        raise RowError(
                            label["qty"], f"is not a whole number: {row[col['qty']].strip()[:30]!r}"
                        )
                    qty = int(value)
                    if qty <= 0:
                        raise RowError(
                            label["qty"],
                            f"must be positive, got {qty} (returns are not read from generic files)",
                        )
                price: float | None = None
                if "price" in has:
                    price = numbers.parse(row[col["price"]], label["price"], line)
                    if price < 0:
                        raise RowError(label["price"], f"must not be negative, got {price}")
                    if opts.price_is == "line-total":
                        price = round(price / qty, 6)
                cur = opts.currency
                if "currency" in has:
                    given = (row[col["currency"]].strip().upper()) or opts.currency
                    if not _CURRENCY.match(given):
                        raise RowError(
                            label["currency"], f"is not a three-letter currency code: {given[:10]!r}"
                        )
                    cur = given
                first, last = text(row, "first_name"), text(row, "last_name")
                if "name" in has and not (first or last):
                    first, last = split_name(text(row, "name", 400))
                country, region = text(row, "country", 100), text(row, "region", 100)
                consent = parse_consent(row[col["consent"]], label["consent"]) if "consent" in has else None
                if opts.basket_by is None:
                    order = text(row, "order", 128, required=True)
                    assert order is not None
                elif opts.basket_by == "customer,date":
                    order = f"basket:{customer}:{when.date().isoformat()}"
                else:
                    order = f"basket:{customer}:{when.isoformat(sep=' ')}"
                asm.add_customer(
                    customer,
                    email=email,
                    first_name=first,
                    last_name=last,
                    country=country,
                    region=region,
                    timezone=timezone_for(country, region),
                    consent=consent,
                    consent_at=when if consent is not None else None,
                )
                asm.add_product(sku, product_name, price, cur, text(row, "category"))
                asm.add_line(line, order, customer, when, cur, sku, qty, price, order_column=order_label)
            except RowError as exc:
                problems.add(line, exc, row)
    finally:
        csv_file.close()
    if rows_read == 0:
        problems.add_file_error("has a header but no rows" if opts.header else "has no rows")
    set_aside: Counter[str] = Counter()
    notes: list[str] = []
    if asm.aggregated:
        set_aside["duplicate_lines_added_up"] = asm.aggregated
    if "price" not in has:
        notes.append("the file has no prices: orders and products are imported without them (no revenue)")
    elif opts.price_is == "unit":
        notes.append(
            f"{label['price']!r} read as the unit price; pass --price-is line-total if it is each line's total"
        )
    else:
        notes.append(f"{label['price']!r} read as each line's total and divided by the quantity")
    if numbers.decided_by is not None:
        where, what = numbers.decided_by
        notes.append(f"decimal separator {numbers.decimal!r} (detected from line {where}: {what!r})")
    return ParseResult(asm.batch, rows_read, set_aside, problems, csv_file.header, notes)


def import_generic(
    store: object,
    path: str | Path,
    mapping: dict[str, str] | GenericOptions,
    *,
    delimiter: str = ",",
    date_format: str | None = None,
    currency: str = "GBP",
    skip_invalid: bool = False,
    rejects_path: Path | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Validate then import in one transaction; ``mapping`` is a field -> column dict (with the keyword
    options) or a full :class:`GenericOptions`. Raises ConfigError / ImportValidationError (nothing written)."""
    started = time.perf_counter()
    opts = (
        mapping
        if isinstance(mapping, GenericOptions)
        else GenericOptions(mapping, delimiter=delimiter, date_format=date_format, currency=currency)
    )
    parsed = parse_generic(path, opts, keep_rejects=skip_invalid, progress=progress)
    return finish_import(
        store,
        path,
        parsed,
        skip_invalid=skip_invalid,
        rejects_path=rejects_path,
        started=started,
        progress=progress,
    )
