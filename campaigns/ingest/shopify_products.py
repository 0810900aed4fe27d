"""Importer for Shopify's products export (Admin > Products > Export), both header generations.

Shopify writes one row per variant; a product's own columns (Title, Body, Vendor, Type, Tags, Published,
Status ...) are filled on its first row only, later rows share the ``Handle`` and carry the variant (SKU,
price, options, stock) or just one more image (``Image Src`` + ``Image Position``). Older exports name the
columns ``Handle``, ``Variant SKU``, ``Variant Price``, ``Variant Compare At Price``, ``Variant Inventory
Qty``, ``Variant Inventory Policy``, ``Image Src``; the current one ``URL handle``, ``SKU``, ``Price``,
``Compare-at price``, ``Inventory quantity``, ``Continue selling when out of stock``, ``Product image URL``.

Rules (docs/import.md):

- one Retain product per **variant**, keyed by its SKU (upper-cased); a variant without SKU by its name as
  an order line names it, ``Title - Option1 / Option2`` (``Title`` alone for ``Default Title``), so the
  orders export's SKU-less lines find it;
- **category**: the shop's own ``Type``, else the last level of ``Product Category`` (``Home & Garden >
  Decor > Vases`` -> ``Vases``); nothing is guessed;
- **image**: the variant's own image, else the product's image at position 1, with its alt text;
- **stock**: out of stock when Shopify tracks inventory, the quantity is 0 or less and the policy is
  ``deny`` (not "continue selling when out of stock");
- **status** active/draft/archived and **Published** are kept: only active, published, in-stock products
  are ever recommended or shown; gift cards (``Gift Card`` TRUE) are set aside;
- **price** is the variant's price; ``Compare At Price`` is kept as the "was" price (shown as a sale when
  it is higher).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from campaigns.errors import ImportValidationError
from campaigns.ingest.base import (
    ParseResult,
    Problems,
    RowError,
    check_stock,
    clean_text,
    open_csv,
    parse_int,
    parsed_file,
)
from campaigns.ingest.catalog import (
    DEFAULT_URL_TEMPLATES,
    CatalogOptions,
    check_sku,
    parse_flag,
    parse_status,
    product_url,
)
from campaigns.ingest.numbers import NumberFormat
from campaigns.ingest.orders import product_key_from_name
from campaigns.store.records import ImportBatch, ProductIn

SOURCE = "shopify"
#: our name -> the column names of the old and the current export
COLUMNS = {
    "handle": ("Handle", "URL handle"),
    "title": ("Title",),
    "vendor": ("Vendor",),
    "type": ("Type",),
    "product_category": ("Product Category", "Product category"),
    "tags": ("Tags",),
    "published": ("Published", "Published on online store"),
    "status": ("Status",),
    "option1": ("Option1 Value", "Option1 value"),
    "option2": ("Option2 Value", "Option2 value"),
    "option3": ("Option3 Value", "Option3 value"),
    "sku": ("Variant SKU", "SKU"),
    "price": ("Variant Price", "Price"),
    "compare": ("Variant Compare At Price", "Compare-at price"),
    "tracker": ("Variant Inventory Tracker", "Inventory tracker"),
    "qty": ("Variant Inventory Qty", "Inventory quantity"),
    "policy": ("Variant Inventory Policy",),
    "continue": ("Continue selling when out of stock",),
    "image": ("Image Src", "Product image URL", "Image source"),
    "image_position": ("Image Position", "Image position"),
    "image_alt": ("Image Alt Text", "Image alt text"),
    "variant_image": ("Variant Image", "Variant image URL"),
    "gift_card": ("Gift Card", "Gift card"),
}
VARIANT_KEYS = ("sku", "price", "option1", "option2", "option3", "qty")


@dataclass
class _Product:
    """One handle's product-level fields and images, with its variants' rows."""

    handle: str
    line: int
    title: str
    vendor: str | None
    category: str | None
    tags: str | None
    published: bool
    status: str
    gift_card: bool
    row: list[str] = field(default_factory=list)  # the first row, for the rejects file
    images: list[tuple[int, str, str | None]] = field(default_factory=list)  # (position, src, alt)
    variants: list[tuple[int, dict[str, str], list[str]]] = field(default_factory=list)  # (line, cells, row)


def _category(type_: str | None, taxonomy: str | None) -> str | None:
    if type_:
        return type_
    if taxonomy:
        return taxonomy.split(">")[-1].strip() or None
    return None


def parse_shopify_products(
    path: str | Path, opts: CatalogOptions, *, keep_rejects: bool = False
) -> ParseResult:
    template = opts.url_template or DEFAULT_URL_TEMPLATES["shopify"]
    CatalogOptions(opts.shop_url, url_template=template).check_template()
    csv_file = open_csv(path)
    header = csv_file.header
    col = {k: next((header.index(n) for n in names if n in header), None) for k, names in COLUMNS.items()}
    missing = [
        names[0] for k, names in COLUMNS.items() if k in ("handle", "title", "price") and col[k] is None
    ]
    if missing:
        csv_file.close()
        raise ImportValidationError(
            str(path),
            [f"{path}:1: missing column(s) {', '.join(map(repr, missing))}: not a Shopify products export? "
             f"found {', '.join(map(repr, header[:8]))} (for another layout use --format generic --map ...)"],
        )  # fmt: skip
    problems = Problems(str(path), keep_rows=keep_rejects)
    numbers = NumberFormat(".")
    set_aside: Counter[str] = Counter()
    products: dict[str, _Product] = {}

    def cell(row: list[str], key: str) -> str:
        i = col[key]
        return row[i].strip() if i is not None and i < len(row) else ""

    try:
        for line, row in csv_file.well_formed(problems):
            try:
                handle = clean_text(cell(row, "handle"), header[col["handle"]], required=True, max_len=255)  # type: ignore[index]
                assert handle is not None
                product = products.get(handle)
                if product is None:
                    title = clean_text(cell(row, "title"), "Title", required=True)
                    assert title is not None
                    product = products[handle] = _Product(
                        handle=handle,
                        line=line,
                        title=title,
                        vendor=clean_text(cell(row, "vendor"), "Vendor", max_len=200),
                        category=_category(
                            clean_text(cell(row, "type"), "Type", max_len=200),
                            clean_text(cell(row, "product_category"), "Product Category"),
                        ),
                        tags=clean_text(cell(row, "tags"), "Tags", max_len=2000),
                        published=parse_flag(cell(row, "published"), "Published"),
                        status=parse_status(cell(row, "status"), "Status"),
                        gift_card=parse_flag(cell(row, "gift_card"), "Gift Card")
                        if cell(row, "gift_card")
                        else False,
                        row=row,
                    )
                src = clean_text(cell(row, "image"), "Image Src", max_len=1000)
                if src:
                    pos = (
                        parse_int(cell(row, "image_position"), "Image Position")
                        if cell(row, "image_position")
                        else 0
                    )
                    alt = clean_text(cell(row, "image_alt"), "Image Alt Text")
                    product.images.append((pos or len(product.images) + 1, src, alt))
                if any(cell(row, k) for k in VARIANT_KEYS):
                    product.variants.append((line, {k: cell(row, k) for k in COLUMNS}, row))
            except RowError as exc:
                problems.add(line, exc, row)
    finally:
        csv_file.close()
    batch = ImportBatch(source=SOURCE)
    seen: dict[str, int] = {}
    for product in products.values():
        if product.gift_card:
            set_aside["gift_card"] += len(product.variants) or 1
            continue
        if not product.variants:
            problems.add(
                product.line,
                RowError("(product)", f"{product.handle!r} has no variant row (no price)"),
                product.row,
            )
            continue
        main = min(product.images)[1:] if product.images else None
        for line, v, row in product.variants:
            try:
                options = [v[k] for k in ("option1", "option2", "option3") if v[k]]
                name = product.title
                if options and options != ["Default Title"]:
                    name = f"{product.title} - {' / '.join(options)}"
                sku = v["sku"].upper() if v["sku"] else product_key_from_name(name)
                check_sku(seen, sku, line, header[col["sku"]] if col["sku"] is not None else "Variant SKU")
                if not v["price"]:
                    raise RowError(header[col["price"]], "is empty on a variant row")  # type: ignore[index]
                price = numbers.parse(v["price"], header[col["price"]], line)  # type: ignore[index]
                compare = numbers.parse(v["compare"], "Compare At Price", line) if v["compare"] else None
                qty = check_stock(parse_int(v["qty"], "Inventory Qty"), "Inventory Qty") if v["qty"] else None
                tracked = bool(v["tracker"]) or (col["tracker"] is None and qty is not None)
                keeps_selling = v["policy"].lower() == "continue" or (
                    bool(v["continue"]) and parse_flag(v["continue"], "Continue selling when out of stock")
                )
                in_stock = not (tracked and qty is not None and qty <= 0 and not keeps_selling)
                image, alt = (v["variant_image"], None) if v["variant_image"] else (main or (None, None))
                if image and alt is None and main and main[0] == image:
                    alt = main[1]
                batch.products[sku] = ProductIn(
                    sku=sku,
                    name=name,
                    price=price,
                    currency=opts.currency,
                    url=product_url(template, opts.shop_url, handle=product.handle, sku=sku, id=None),
                    image_url=image,
                    category=product.category,
                    in_stock=in_stock,
                    handle=product.handle,
                    image_alt=alt,
                    compare_at_price=compare,
                    status=product.status,
                    published=product.published,
                    vendor=product.vendor,
                    tags=product.tags,
                    inventory_qty=qty,
                )
            except RowError as exc:
                problems.add(line, exc, row)
    return parsed_file(csv_file, batch, problems, set_aside)
