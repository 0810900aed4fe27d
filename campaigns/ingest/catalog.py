"""Product catalogues: what every catalogue importer shares, and the generic catalogue CSV.

A catalogue import (``retain import catalog PATH --format shopify|woocommerce|generic``) describes products:
name, price, compare-at ("was") price, the shop's own category, vendor, tags, status (active / draft /
archived), published, stock, main image with its alt text, and the product page's URL. It owns those
fields: a later orders import never overwrites them. Re-importing a catalogue compares each product with
the previous catalogue import and records ``back_in_stock`` / ``out_of_stock`` / ``price_drop`` product
events with their time (campaigns/store/importing.py). Products missing from a re-imported file are left
as they were (a partial export must not archive the rest of the shop).

**Links** are built at import time from a template (``--url-template``, else the ``product_url_template``
setting, else the format's default) with the placeholders ``{shop_url}``, ``{handle}``, ``{sku}`` and
``{id}`` (the shop's own product id). A product without what its template needs gets no URL (cards then
link to the shop). Shopify: ``{shop_url}/products/{handle}``; WooCommerce: ``{shop_url}/?p={id}`` (WordPress
redirects it to the product's permalink); generic: the mapped ``url`` column, else the template if given.

The generic catalogue CSV maps columns with ``--map``: ``sku`` and/or ``name`` (a row without SKU is keyed
by its name, as order lines without SKU are), ``price``, ``compare_at_price``, ``url``, ``handle``, ``id``,
``image_url``, ``image_alt``, ``category``, ``vendor``, ``tags``, ``status`` (active/draft/archived),
``published`` (yes/no), ``in_stock`` (yes/no; without it, ``inventory_qty`` <= 0 means out of stock),
``inventory_qty``, ``currency``.
"""

from __future__ import annotations

import string
import time
from dataclasses import dataclass
from pathlib import Path

from campaigns.errors import ConfigError
from campaigns.ingest.base import (
    ParseResult,
    Problems,
    RowError,
    check_stock,
    clean_text,
    finish_import,
    open_csv,
    parse_int,
    parsed_file,
    require_columns,
)
from campaigns.ingest.numbers import NumberFormat
from campaigns.ingest.orders import parse_consent, product_key_from_name
from campaigns.store.records import PRODUCT_STATUSES, ImportBatch, ImportSummary, ProductIn

PLACEHOLDERS = ("shop_url", "handle", "sku", "id")
DEFAULT_URL_TEMPLATES = {
    "shopify": "{shop_url}/products/{handle}",
    "woocommerce": "{shop_url}/?p={id}",
    "generic": "",
}
GENERIC_FIELDS = (
    "sku", "name", "price", "compare_at_price", "url", "handle", "id", "image_url", "image_alt", "category",
    "vendor", "tags", "status", "published", "in_stock", "inventory_qty", "currency",
)  # fmt: skip


@dataclass(frozen=True)
class CatalogOptions:
    """How to read one catalogue file (the fields are the CLI options of the same name)."""

    shop_url: str
    currency: str = "GBP"
    url_template: str = ""
    delimiter: str = ","
    decimal: str | None = None
    mapping: dict[str, str] | None = None  # generic only

    def check_template(self) -> None:
        """ConfigError for an unknown placeholder or a malformed template (before the file is read)."""
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(self.url_template) if f is not None]
        except ValueError as exc:
            raise ConfigError(f"--url-template {self.url_template!r} is not a template: {exc}") from None
        unknown = [f for f in fields if f not in PLACEHOLDERS]
        if unknown:
            raise ConfigError(
                f"--url-template: unknown placeholder {{{unknown[0]}}} "
                f"(known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)})"
            )


def product_url(template: str, shop_url: str, *, handle: str | None, sku: str, id: str | None) -> str | None:
    """The template filled in; None when it needs a handle or id the product does not have."""
    if not template:
        return None
    values = {"shop_url": shop_url.rstrip("/"), "handle": handle, "sku": sku, "id": id}
    needed = [f for _, f, _, _ in string.Formatter().parse(template) if f]
    if any(not values.get(f) for f in needed):
        return None
    return template.format(**values)


def parse_flag(value: str, column: str) -> bool:
    """yes/no, true/false, 1/0 (Shopify writes TRUE/FALSE)."""
    return parse_consent(value, column) if value.strip() else True


def parse_status(value: str, column: str) -> str:
    status = value.strip().lower() or "active"
    if status not in PRODUCT_STATUSES:
        raise RowError(
            column, f"is not a product status ({', '.join(PRODUCT_STATUSES)}): {value.strip()[:20]!r}"
        )
    return status


def check_sku(seen: dict[str, int], sku: str, line: int, column: str) -> None:
    """RowError when two rows of one catalogue give the same SKU (Retain keys products by SKU)."""
    first = seen.setdefault(sku, line)
    if first != line:
        raise RowError(column, f"{sku!r} is also the SKU on line {first}: SKUs must be unique in a catalogue")


# -- the generic catalogue CSV -----------------------------------------------------------------------------


def parse_catalog_mapping(spec: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, sep, column = part.partition("=")
        if not sep or not column.strip():
            raise ConfigError(f"--map: {part!r} is not field=column")
        if name.strip() not in GENERIC_FIELDS:
            raise ConfigError(
                f"--map: unknown catalogue field {name.strip()!r} (known: {', '.join(GENERIC_FIELDS)})"
            )
        mapping[name.strip()] = column.strip()
    if "sku" not in mapping and "name" not in mapping:
        raise ConfigError("--map must name the product's sku=Column and/or name=Column")
    if "name" not in mapping:
        raise ConfigError("--map must name the product name column (name=Title)")
    return mapping


def parse_generic_catalog(
    path: str | Path, opts: CatalogOptions, *, keep_rejects: bool = False
) -> ParseResult:
    mapping = opts.mapping or {}
    opts.check_template()
    csv_file = open_csv(path, delimiter=opts.delimiter)
    idx = require_columns(csv_file, list(mapping.values()), delimiter=opts.delimiter, options=mapping)
    col = {f: idx[c] for f, c in mapping.items()}
    numbers = NumberFormat(opts.decimal)
    problems = Problems(str(path), keep_rows=keep_rejects)
    batch = ImportBatch(source="generic")
    seen: dict[str, int] = {}

    def get(row: list[str], name: str) -> str:
        return row[col[name]] if name in col else ""

    def text(row: list[str], name: str, max_len: int = 500) -> str | None:
        return clean_text(get(row, name), mapping[name], max_len=max_len) if name in col else None

    def money(row: list[str], name: str, line: int) -> float | None:
        if name not in col or not get(row, name).strip():
            return None
        value = numbers.parse(get(row, name), mapping[name], line)
        if value < 0:
            raise RowError(mapping[name], f"must not be negative, got {value}")
        return value

    try:
        for line, row in csv_file.well_formed(problems):
            try:
                name = clean_text(get(row, "name"), mapping["name"], required=True)
                assert name is not None
                sku_text = text(row, "sku", 128)
                sku = sku_text.upper() if sku_text else product_key_from_name(name)
                check_sku(seen, sku, line, mapping.get("sku", mapping["name"]))
                qty = (
                    check_stock(
                        parse_int(get(row, "inventory_qty"), mapping["inventory_qty"]),
                        mapping["inventory_qty"],
                    )
                    if get(row, "inventory_qty").strip()
                    else None
                )
                if "in_stock" in col and get(row, "in_stock").strip():
                    in_stock = parse_flag(get(row, "in_stock"), mapping["in_stock"])
                else:
                    in_stock = qty is None or qty > 0
                handle, pid = text(row, "handle", 255), text(row, "id", 64)
                url = text(row, "url", 1000) or product_url(
                    opts.url_template, opts.shop_url, handle=handle, sku=sku, id=pid
                )
                currency = (text(row, "currency", 3) or opts.currency).upper()
                batch.products[sku] = ProductIn(
                    sku=sku,
                    name=name,
                    price=money(row, "price", line),
                    currency=currency,
                    url=url,
                    image_url=text(row, "image_url", 1000),
                    category=text(row, "category", 200),
                    in_stock=in_stock,
                    handle=handle,
                    image_alt=text(row, "image_alt"),
                    compare_at_price=money(row, "compare_at_price", line),
                    status=parse_status(get(row, "status"), mapping.get("status", "status")),
                    published=parse_flag(get(row, "published"), mapping.get("published", "published")),
                    vendor=text(row, "vendor", 200),
                    tags=text(row, "tags", 2000),
                    inventory_qty=qty,
                )
            except RowError as exc:
                problems.add(line, exc, row)
    finally:
        csv_file.close()
    return parsed_file(csv_file, batch, problems)


def import_catalog(
    store: object,
    path: str | Path,
    format: str,
    opts: CatalogOptions,
    *,
    skip_invalid: bool = False,
    rejects_path: Path | None = None,
) -> ImportSummary:
    """Validate then import a catalogue in one transaction; ``format`` is shopify, woocommerce or generic."""
    from campaigns.ingest.shopify_products import parse_shopify_products
    from campaigns.ingest.woocommerce import parse_woocommerce_products

    started = time.perf_counter()
    parsers = {
        "shopify": parse_shopify_products,
        "woocommerce": parse_woocommerce_products,
        "generic": parse_generic_catalog,
    }
    if format not in parsers:
        raise ConfigError(f"--format must be one of {', '.join(parsers)}, got {format!r}")
    if format == "generic" and not opts.mapping:
        raise ConfigError("--format generic needs --map sku=...,name=...,price=... (see docs/import.md)")
    if format != "generic" and opts.mapping:
        raise ConfigError(f"--map is only for --format generic ({format}'s export has a fixed shape)")
    parsed = parsers[format](path, opts, keep_rejects=skip_invalid)
    parsed.batch.catalog = True
    return finish_import(
        store, path, parsed, skip_invalid=skip_invalid, rejects_path=rejects_path, started=started
    )
