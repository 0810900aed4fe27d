"""The back_in_stock kind end to end on SQLite and PostgreSQL: Shopify orders + a products export, a
re-import that finds a restock and a price drop, then the campaign mails exactly the buyers of those
products (or their category), with the old price struck through."""

from __future__ import annotations

import email
import email.policy
import os
import shutil
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from campaigns.definition import find_campaign, load_campaign
from campaigns.errors import TemplateError
from campaigns.ingest import import_shopify
from campaigns.ingest.catalog import CatalogOptions, import_catalog
from campaigns.ingest.shopify_customers import import_shopify_customers
from campaigns.kinds.back_in_stock import BackInStockSpec
from campaigns.runner import run_campaign
from campaigns.senders import memory

from .csv_files import edited_copy
from .synthetic import ROOT, shop_settings

FIXTURES = Path(__file__).parent / "fixtures"
OPTS = CatalogOptions("https://shop.example.com", currency="EUR")


def readable(data: bytes) -> str:
    """Subject, HTML and text of a wire message, decoded."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    parts = [message.get_body(("html",)), message.get_body(("plain",))]
    return f"Subject: {message['Subject']}\n" + "\n".join(p.get_content() for p in parts if p is not None)


def reimport_with(tmp_path: Path, store: Any, changes: dict[str, dict[str, str]]) -> None:
    path = edited_copy(FIXTURES / "shopify_products_export.csv", tmp_path / "products_export.csv", changes)
    import_catalog(store, path, "shopify", OPTS)


@pytest.fixture
def news_shop(store: Any, tmp_path: Path) -> dict[str, Any]:
    import_catalog(store, FIXTURES / "shopify_products_export.csv", "shopify", OPTS)
    import_shopify(store, FIXTURES / "shopify_orders_export.csv", currency="EUR")
    customers = tmp_path / "customers_export.csv"  # Grace and Mia subscribed, Ada unsubscribed since
    shutil.copyfile(FIXTURES / "shopify_customers_export.csv", customers)
    os.utime(customers, (datetime(2024, 9, 1).timestamp(),) * 2)
    import_shopify_customers(store, customers)
    # the bowl (bought by Grace in #1006) is restocked; the candle (Grace #1002, Mia #1009) drops 11 -> 9;
    # the apron becomes a draft: its buyers hear nothing of it
    reimport_with(
        tmp_path,
        store,
        {
            "bwl-stone": {"Variant Inventory Qty": "5"},
            "CND-BEES": {"Variant Price": "9.00"},
            "APR-SAGE": {"Variant Price": "12.00"},
            "APR-RUST": {"Variant Price": "12.00"},
        },
    )
    settings = shop_settings(tmp_path, holdout_share=0.0)
    memory.clear()
    return {"store": store, "settings": settings}


def test_buyers_of_restocked_or_cheaper_products_hear_about_them(news_shop: dict[str, Any]) -> None:
    store, s = news_shop["store"], news_shop["settings"]
    assert {e.kind for e in store.product_events()} == {"back_in_stock", "price_drop"}
    d = find_campaign(ROOT / "templates", "back-in-stock")
    summary = run_campaign(store, s, d, sender="memory://", run_key="week1")
    got = {m.rcpt_to: readable(m.data) for m in memory.outbox()}
    # Grace bought the bowl and the candle, Mia the candle; Ada bought the apron (a price drop too) but
    # unsubscribed from marketing
    assert set(got) == {"grace.hopper@example.org", "mia@example.com"}
    assert summary.sent == 2 and summary.skipped == {"no_consent": 1}
    grace = got["grace.hopper@example.org"]
    assert "Back in stock" in grace and "Stoneware Bowl" in grace and "Now for less" in grace
    assert "<s " in grace and "€11.00" in grace and "€9.00" in grace  # was / now
    assert 'alt=3D"Speckled stoneware bowl"' in grace or 'alt="Speckled stoneware bowl"' in grace
    assert "Subject: Grace, it's back in stock" in grace
    mia = got["mia@example.com"]
    assert "Beeswax Candle" in mia and "Stoneware Bowl" not in mia
    assert "Subject: Mia, a favourite of yours costs less now" in mia


def test_unavailable_products_and_other_shops_products_are_left_out(
    news_shop: dict[str, Any], tmp_path: Path
) -> None:
    store, s = news_shop["store"], news_shop["settings"]
    # the candle goes back out of stock after its price drop: nobody hears about it any more
    reimport_with(
        tmp_path,
        store,
        {
            "bwl-stone": {"Variant Inventory Qty": "5"},
            "CND-BEES": {"Variant Price": "9.00", "Variant Inventory Qty": "0"},
            "APR-SAGE": {"Variant Price": "12.00", "Status": "draft"},
            "APR-RUST": {"Variant Price": "12.00"},
        },
    )
    d = find_campaign(ROOT / "templates", "back-in-stock")
    summary = run_campaign(store, s, d, sender="memory://", run_key="week1")
    assert Counter(m.rcpt_to for m in memory.outbox()) == Counter({"grace.hopper@example.org": 1})
    # Mia (candle) is in the audience but has no news left; Ada has no consent
    assert summary.skipped == {"no news for this customer": 1, "no_consent": 1}


def test_category_matching_reaches_buyers_of_the_category(news_shop: dict[str, Any], tmp_path: Path) -> None:
    store, s = news_shop["store"], news_shop["settings"]
    source = (ROOT / "templates" / "emails" / "back-in-stock.mjml").read_text()
    path = tmp_path / "templates" / "emails" / "bis-category.mjml"
    path.parent.mkdir(parents=True)
    path.write_text(
        source.replace("name: back-in-stock", "name: bis-category").replace(
            "events: [back_in_stock, price_drop], match: product", "events: [back_in_stock], match: category"
        )
    )
    (path.parent.parent / "layouts").symlink_to(ROOT / "templates" / "layouts")
    (path.parent.parent / "partials").symlink_to(ROOT / "templates" / "partials")
    d = load_campaign(path)
    assert d.options["back_in_stock"] == BackInStockSpec(events=("back_in_stock",), match="category")
    run_campaign(store, s, d, sender="memory://", run_key="week1")
    # only the bowl came back; its category ("Serving Bowls") was bought only by Grace
    assert [m.rcpt_to for m in memory.outbox()] == ["grace.hopper@example.org"]


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("{events: [sale]}", "back_in_stock.events must be a list of back_in_stock, price_drop"),
        ("{match: vendor}", "back_in_stock.match must be one of product, category"),
        ("{within_days: 90}", "back_in_stock.within_days must be at most 60"),
        ("{count: 0}", "count"),
    ],
)
def test_options_are_checked(tmp_path: Path, option: str, message: str) -> None:
    path = tmp_path / "emails" / "c.mjml"
    path.parent.mkdir(parents=True)
    path.write_text(f"---\nkind: back_in_stock\nsubject: s\nback_in_stock: {option}\n---\n<mjml></mjml>\n")
    with pytest.raises(TemplateError, match=message):
        load_campaign(path)
