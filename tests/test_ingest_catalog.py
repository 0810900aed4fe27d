"""Product catalogues: Shopify's products export (both header generations), WooCommerce's product CSV and a
generic CSV, on SQLite and PostgreSQL; re-imports record back-in-stock / price-drop events; orders never
overwrite what a catalogue says; unavailable products are never recommended."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from campaigns.errors import ConfigError, ImportValidationError
from campaigns.ingest import import_shopify
from campaigns.ingest.catalog import CatalogOptions, import_catalog, parse_catalog_mapping, product_url
from campaigns.training import catalog_from_products
from recommender.rules import Rules, allowed_items

from .csv_files import edited_copy

FIXTURES = Path(__file__).parent / "fixtures"
SHOPIFY = FIXTURES / "shopify_products_export.csv"
SHOPIFY_2024 = FIXTURES / "shopify_products_export_2024.csv"
WOO = FIXTURES / "woocommerce_products.csv"
OPTS = CatalogOptions("https://shop.example.com/", currency="EUR")


def products(store: object) -> dict[str, object]:
    return {p.sku: p for p in store.all_products()}  # type: ignore[attr-defined]


def edited(
    tmp_path: Path, source: Path, changes: dict[str, dict[str, str]], key: str = "Variant SKU"
) -> Path:
    """A copy of a CSV with some rows' cells changed (rows found by ``key``)."""
    return edited_copy(source, tmp_path / source.name, changes, key)


# -- Shopify -----------------------------------------------------------------------------------------------


def test_shopify_products_export(store: object) -> None:
    summary = import_catalog(store, SHOPIFY, "shopify", OPTS)
    assert summary.set_aside == {"gift_card": 2} and summary.products_added == 10
    p = products(store)
    sage, rust = p["APR-SAGE"], p["APR-RUST"]
    # variants share the product's fields from its first row, and are named like order lines
    assert (sage.name, rust.name) == ("Linen Apron - Sage", "Linen Apron - Rust")
    assert sage.category == rust.category == "Aprons" and sage.vendor == "Paper & Pine"
    assert sage.url == "https://shop.example.com/products/linen-apron" and sage.handle == "linen-apron"
    assert sage.image_url.endswith("apron-sage.jpg") and sage.image_alt == "Sage linen apron on a hook"
    assert sage.available and not rust.in_stock and not rust.available  # tracked, 0 left, policy deny
    mug = p["MUG-ENAMEL"]
    assert mug.name == "Enamel Mug" and mug.image_alt == "White enamel mug with a blue rim"  # Default Title
    candle = p["CND-BEES"]
    assert (candle.price, candle.compare_at_price, candle.on_sale) == (11.0, 14.0, True)
    assert candle.image_alt is None  # an image without alt text: cards fall back to the name
    assert p["BWL-STONE"].category == "Serving Bowls"  # no Type: the last level of Product Category
    assert p["custom-engraving"].in_stock  # not tracked; no SKU: keyed by name like the order line
    assert p["VAS-PRE"].in_stock and p["VAS-PRE"].inventory_qty == -3  # continue selling when out of stock
    assert (p["THR-WIN"].status, p["CAL-2023"].status) == ("draft", "archived")
    assert not p["CRT-TRADE"].published
    assert [s for s, x in p.items() if x.available] == [
        "APR-SAGE",
        "MUG-ENAMEL",
        "CND-BEES",
        "custom-engraving",
        "VAS-PRE",
    ]


def test_shopify_products_export_current_headers(store: object) -> None:
    import_catalog(store, SHOPIFY_2024, "shopify", OPTS)
    p = products(store)
    s, large, medium = p["SOCK-WOOL-S"], p["SOCK-WOOL-L"], p["SOCK-WOOL-M"]
    assert s.name == "Wool Socks - S" and s.category == "Socks" and s.image_alt == "Grey wool socks"
    assert (s.price, s.compare_at_price) == (9.5, 12.0)
    assert not large.in_stock and medium.in_stock  # M: continue selling when out of stock
    assert medium.image_url.endswith("socks-m.jpg")  # its own variant image
    assert (
        p["TWL-TEA"].published is False and p["TWL-TEA"].url == "https://shop.example.com/products/tea-towel"
    )


def test_reimport_records_back_in_stock_and_price_drops(store: object, tmp_path: Path) -> None:
    first = import_catalog(store, SHOPIFY, "shopify", OPTS)
    assert first.events == {} and store.product_events() == []  # type: ignore[attr-defined]
    changed = edited(
        tmp_path,
        SHOPIFY,
        {
            "bwl-stone": {"Variant Inventory Qty": "6"},
            "CND-BEES": {"Variant Price": "9.00"},
            "MUG-ENAMEL": {"Variant Inventory Qty": "0"},
            "APR-SAGE": {"Variant Price": "16.00"},  # a rise is no event
        },
    )
    again = import_catalog(store, changed, "shopify", OPTS)
    assert again.products_added == 0 and again.products_updated == 10
    assert again.events == {"back_in_stock": 1, "out_of_stock": 1, "price_drop": 1}
    events = {(e.sku, e.kind): e for e in store.product_events()}  # type: ignore[attr-defined]
    assert set(events) == {
        ("BWL-STONE", "back_in_stock"),
        ("MUG-ENAMEL", "out_of_stock"),
        ("CND-BEES", "price_drop"),
    }
    drop = events[("CND-BEES", "price_drop")]
    assert (drop.old_value, drop.new_value) == (11.0, 9.0) and drop.created_at is not None
    assert store.product_events(kinds=["price_drop"], since=drop.created_at) == [drop]  # type: ignore[attr-defined]
    # the same file again: nothing changed, nothing recorded
    assert import_catalog(store, changed, "shopify", OPTS).events == {}


def test_orders_never_overwrite_the_catalogue(store: object) -> None:
    import_catalog(store, SHOPIFY, "shopify", OPTS)
    import_shopify(store, FIXTURES / "shopify_orders_export.csv", currency="EUR")
    p = products(store)
    # the orders export sold APR-SAGE at 13.00 in GBP: the catalogue's price and name stay
    assert (p["APR-SAGE"].price, p["APR-SAGE"].currency, p["APR-SAGE"].name) == (
        15.0,
        "EUR",
        "Linen Apron - Sage",
    )
    assert p["custom-engraving"].category == "Services"  # the SKU-less order line found its product
    assert "CUSTOM-ENGRAVING" not in p and len(p) == 10


def test_unavailable_products_are_never_recommended(store: object) -> None:
    import_catalog(store, SHOPIFY, "shopify", OPTS)
    all_products = store.all_products()  # type: ignore[attr-defined]
    catalog = catalog_from_products(all_products)
    ids = np.array([p.id for p in all_products], dtype=np.int64)
    allowed = allowed_items(Rules(), catalog, ids)
    assert {p.sku for p, ok in zip(all_products, allowed, strict=True) if ok} == {
        p.sku for p in all_products if p.available
    }


# -- WooCommerce and generic -------------------------------------------------------------------------------


def test_woocommerce_product_csv(store: object) -> None:
    summary = import_catalog(store, WOO, "woocommerce", OPTS)
    assert summary.set_aside == {"variable_parent": 1, "grouped_product": 1}
    p = products(store)
    red, green, blue = p["WOO-VNECK-TEE-RED"], p["WOO-VNECK-TEE-GREEN"], p["v-neck-t-shirt-blue"]
    # variations inherit the parent's category and tags and link to its page
    assert (
        red.category == "Tshirts"
        and red.tags == "cotton, summer"
        and red.url == "https://shop.example.com/?p=44"
    )
    assert red.image_url.endswith("vneck-tee-red.jpg") and green.image_url.endswith("vneck-tee-2.jpg")
    assert not green.in_stock and blue.in_stock  # "backorder" can be bought
    assert (blue.price, blue.compare_at_price) == (12.0, 15.0)  # a sale with no dates runs
    assert (p["WOO-BEANIE"].price, p["WOO-BEANIE"].compare_at_price) == (20.0, None)  # a sale that ended
    assert p["WOO-SECRET"].status == "draft"  # Published '-1 (WooCommerce's apostrophe) = draft
    assert not p["WOO-HIDDEN-BELT"].published
    assert p["WP-PENNANT"].url == "https://mercantile.wordpress.org/product/wordpress-pennant/"
    assert p["WOO-ALBUM"].category == "Music"


def test_generic_catalogue_with_decimal_commas(store: object) -> None:
    mapping = parse_catalog_mapping(
        "sku=Code,name=Title,price=Price,compare_at_price=Was,url=Link,image_url=Picture,image_alt=Picture text,"
        "category=Section,inventory_qty=Qty,status=State"
    )
    opts = CatalogOptions("https://tea.example.com", currency="EUR", delimiter=";", mapping=mapping)
    import_catalog(store, FIXTURES / "catalog_generic.csv", "generic", opts)
    p = products(store)
    assert (p["A-100"].price, p["A-100"].category, p["A-100"].image_alt) == (
        4.95,
        "Tea",
        "Loose sencha leaves",
    )
    assert (p["A-101"].price, p["A-101"].compare_at_price, p["A-101"].in_stock) == (3.5, 4.2, False)
    assert p["gift-wrap"].status == "draft" and p["A-100"].url == "https://tea.example.com/p/sencha"


# -- hostile input -----------------------------------------------------------------------------------------


def test_duplicate_skus_are_refused_naming_both_lines(store: object, tmp_path: Path) -> None:
    path = edited(tmp_path, SHOPIFY, {"APR-RUST": {"Variant SKU": "apr-sage"}})
    with pytest.raises(ImportValidationError, match=r":4: Variant SKU: 'APR-SAGE' is also the SKU on line 2"):
        import_catalog(store, path, "shopify", OPTS)
    assert store.all_products() == []  # type: ignore[attr-defined]


def test_bad_status_and_wrong_file_are_clear(store: object, tmp_path: Path) -> None:
    path = edited(tmp_path, SHOPIFY, {"MUG-ENAMEL": {"Status": "gone"}})
    with pytest.raises(
        ImportValidationError, match=r"Status: is not a product status \(active, draft, archived\)"
    ):
        import_catalog(store, path, "shopify", OPTS)
    with pytest.raises(ImportValidationError, match=r"not a Shopify products export\?.*--format generic"):
        import_catalog(store, WOO, "shopify", OPTS)
    assert store.all_products() == []  # type: ignore[attr-defined]


def test_url_templates() -> None:
    with pytest.raises(ConfigError, match=r"unknown placeholder \{slug\}"):
        CatalogOptions("https://s.example", url_template="{shop_url}/{slug}").check_template()
    with pytest.raises(ConfigError, match="is not a template"):
        CatalogOptions("https://s.example", url_template="{shop_url").check_template()
    assert product_url("{shop_url}/shop/{sku}", "https://s.example/", handle=None, sku="A1", id=None) == (
        "https://s.example/shop/A1"
    )
    assert (
        product_url("{shop_url}/products/{handle}", "https://s.example", handle=None, sku="A1", id=None)
        is None
    )
