"""Importer for WooCommerce's product CSV (Products > Export, the built-in exporter since WooCommerce 3.1).

Columns as WooCommerce writes them: ``ID``, ``Type``, ``SKU``, ``Name``, ``Published``, ``Visibility in
catalog``, ``In stock?``, ``Stock``, ``Sale price``, ``Regular price``, ``Date sale price starts/ends``,
``Categories``, ``Tags``, ``Images``, ``Parent``, ``External URL`` ... Rules (docs/import.md):

- **Types**: ``simple`` and ``external`` rows are products; a ``variable`` product is the parent of its
  ``variation`` rows, which are the products (a parent whose variations are in the file is set aside as
  ``variable_parent``; a variation takes the parent's category, tags, image and status when its own are
  empty; ``Parent`` names the parent by SKU or ``id:<ID>``); ``grouped`` rows have no price of their own
  and are set aside. A type list such as ``"simple, downloadable, virtual"`` is read by its first word.
- **Price**: the sale price while the sale runs (no dates, or today between them), with the regular price
  as the "was" price; otherwise the regular price.
- **Status**: ``Published`` 1 -> active, 0 (private) or -1 (draft) -> draft; ``Visibility in catalog``
  ``hidden`` -> not published. ``In stock?`` 0 -> out of stock (1 and ``backorder`` can be bought).
- **Category**: the last level of the first category path (``Clothing > Tshirts, Clothing`` -> ``Tshirts``).
- **Image**: the first of ``Images``; the export has no alt text (cards use the product name).
- **Link**: ``{shop_url}/?p={id}`` (a variation links to its parent's page); ``External URL`` for external
  products.
- WooCommerce writes numbers that start with ``-`` as ``'-1`` (against spreadsheet formulas): the
  apostrophe is dropped.
"""

from __future__ import annotations

from collections import Counter
from datetime import date, datetime
from pathlib import Path

from campaigns.ingest.base import (
    ParseResult,
    Problems,
    RowError,
    check_stock,
    clean_text,
    open_csv,
    parsed_file,
    require_columns,
)
from campaigns.ingest.catalog import DEFAULT_URL_TEMPLATES, CatalogOptions, check_sku, product_url
from campaigns.ingest.numbers import NumberFormat
from campaigns.ingest.orders import product_key_from_name
from campaigns.store.base import utcnow
from campaigns.store.records import ImportBatch, ProductIn

SOURCE = "woocommerce"
REQUIRED = ("Type", "SKU", "Name", "Regular price")
OPTIONAL = (
    "ID", "Published", "Visibility in catalog", "In stock?", "Stock", "Sale price", "Date sale price starts",
    "Date sale price ends", "Categories", "Tags", "Images", "Parent", "External URL",
)  # fmt: skip
PRODUCT_TYPES = ("simple", "external", "variation")


def _sale_runs(starts: str, ends: str, today: date) -> bool:
    def day(text: str) -> date | None:
        text = text.strip()
        return datetime.fromisoformat(text[:10]).date() if text else None

    try:
        first, last = day(starts), day(ends)
    except ValueError:
        return True  # an unreadable date never hides a sale price the shop entered
    return (first is None or first <= today) and (last is None or today <= last)


def parse_woocommerce_products(
    path: str | Path, opts: CatalogOptions, *, keep_rejects: bool = False
) -> ParseResult:
    template = opts.url_template or DEFAULT_URL_TEMPLATES["woocommerce"]
    CatalogOptions(opts.shop_url, url_template=template).check_template()
    csv_file = open_csv(path, delimiter=opts.delimiter)
    idx = require_columns(csv_file, REQUIRED, delimiter=opts.delimiter)
    header = csv_file.header
    pos = {c: header.index(c) for c in OPTIONAL if c in header} | idx
    problems = Problems(str(path), keep_rows=keep_rejects)
    numbers = NumberFormat(opts.decimal or ".")
    set_aside: Counter[str] = Counter()
    today = utcnow().date()
    rows: list[tuple[int, dict[str, str], list[str]]] = []

    def cell(row: list[str], column: str) -> str:
        i = pos.get(column)
        return row[i].strip().removeprefix("'") if i is not None and i < len(row) else ""

    try:
        for line, row in csv_file.well_formed(problems):
            rows.append((line, {c: cell(row, c) for c in pos}, row))
    finally:
        csv_file.close()
    parents = {r["SKU"]: r for _, r, _ in rows if r["Type"].startswith("variable") and r["SKU"]}
    parents |= {f"id:{r['ID']}": r for _, r, _ in rows if r["Type"].startswith("variable") and r.get("ID")}
    with_variations = {id(parents[r["Parent"]]) for _, r, _ in rows if r.get("Parent") in parents}
    batch = ImportBatch(source=SOURCE)
    seen: dict[str, int] = {}
    for line, r, row in rows:
        try:
            kind = r["Type"].split(",")[0].strip().lower()
            if kind == "variable":
                if id(r) in with_variations:
                    set_aside["variable_parent"] += 1
                    continue
                kind = "simple"  # a variable product exported without its variations: sell it as it is
            elif kind == "grouped":
                set_aside["grouped_product"] += 1
                continue
            elif kind not in PRODUCT_TYPES:
                raise RowError(
                    "Type",
                    f"unknown product type {r['Type']!r} (known: simple, variable, variation, grouped, external)",
                )
            parent = parents.get(r.get("Parent", "")) if kind == "variation" else None
            if kind == "variation" and r.get("Parent") and parent is None:
                raise RowError(
                    "Parent", f"names {r['Parent']!r}, which is not a variable product in this file"
                )

            def inherited(column: str, r: dict[str, str] = r, parent: dict[str, str] | None = parent) -> str:
                return r.get(column, "") or (parent.get(column, "") if parent else "")

            name = clean_text(r["Name"], "Name", required=True)
            assert name is not None
            sku = r["SKU"].upper() if r["SKU"] else product_key_from_name(name)
            check_sku(seen, sku, line, "SKU")
            regular = numbers.parse(r["Regular price"], "Regular price", line) if r["Regular price"] else None
            sale = numbers.parse(r["Sale price"], "Sale price", line) if r.get("Sale price") else None
            on_sale = sale is not None and _sale_runs(
                r.get("Date sale price starts", ""), r.get("Date sale price ends", ""), today
            )
            price, compare = (sale, regular) if on_sale else (regular, None)
            published = inherited("Published") or "1"
            if published not in ("1", "0", "-1"):
                raise RowError("Published", f"is not 1, 0 or -1: {published[:10]!r}")
            stock_flag = inherited("In stock?").lower() or "1"
            if stock_flag not in ("1", "0", "backorder"):
                raise RowError("In stock?", f"is not 1, 0 or backorder: {stock_flag[:10]!r}")
            qty_text = r.get("Stock", "")
            qty = check_stock(int(numbers.parse(qty_text, "Stock", line)), "Stock") if qty_text else None
            categories = inherited("Categories")
            category = categories.split(",")[0].split(">")[-1].strip() or None if categories else None
            images = [u.strip() for u in inherited("Images").split(",") if u.strip()]
            page_id = (parent.get("ID") if parent else None) or r.get("ID") or None
            url = r.get("External URL") or product_url(
                template, opts.shop_url, handle=None, sku=sku, id=page_id
            )
            batch.products[sku] = ProductIn(
                sku=sku,
                name=name,
                price=price,
                currency=opts.currency,
                url=clean_text(url or "", "External URL", max_len=1000),
                image_url=clean_text(images[0], "Images", max_len=1000) if images else None,
                category=clean_text(category or "", "Categories", max_len=200),
                in_stock=stock_flag != "0",
                image_alt=None,
                compare_at_price=compare,
                status="active" if published == "1" else "draft",
                published=inherited("Visibility in catalog").lower() != "hidden",
                tags=clean_text(inherited("Tags"), "Tags", max_len=2000),
                inventory_qty=qty,
            )
        except RowError as exc:
            problems.add(line, exc, row)
    return parsed_file(csv_file, batch, problems, set_aside)
