"""Kinds build one customer's context from plain records; an empty email is a NoContent skip."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from campaigns.config import Settings
from campaigns.definition import find_campaign
from campaigns.kinds import ContextInputs, NoContent, build_context
from campaigns.kinds.fixture import load_fixture
from campaigns.store.records import CustomerRecord, OrderLineRecord, OrderRecord, ProductRecord
from campaigns.tokens import FEEDBACK, verify_token
from recommender.blocks import Block, Recommendation, RecommendedItem

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
SETTINGS = Settings(
    secret_key="kinds-test", shop_url="https://shop.example", public_url="https://retain.example"
)


def customer(**kw: object) -> CustomerRecord:
    base = dict(
        id=5,
        external_id="C5",
        email="c@example.com",
        first_name="Ada",
        last_name=None,
        country=None,
        timezone=None,
        marketing_consent=True,
        consent_source=None,
        is_demo=True,
    )
    base.update(kw)
    return CustomerRecord(**base)  # type: ignore[arg-type]


def product(pid: int, category: str = "home-decor", **kw: object) -> ProductRecord:
    base = dict(
        id=pid,
        sku=f"S{pid}",
        name=f"THING {pid}",
        price=1.5 * pid,
        currency="GBP",
        url=None,
        image_url=None,
        category=category,
        in_stock=True,
    )
    base.update(kw)
    return ProductRecord(**base)  # type: ignore[arg-type]


PRODUCTS = {1: product(1), 2: product(2, "kitchen"), 3: product(3, in_stock=False), 4: product(4)}


def context_of(d: Any, settings: Settings, *, is_preview: bool = False, **inputs: Any) -> dict[str, Any]:
    return build_context(d, settings, ContextInputs(**inputs), is_preview=is_preview)


def rec(**blocks: list[int]) -> Recommendation:
    return Recommendation(
        5, tuple(Block(n, tuple(RecommendedItem(p, 1.0, f"r{p}") for p in ids)) for n, ids in blocks.items())
    )


def test_recommendation_context() -> None:
    d = find_campaign(TEMPLATES, "weekly-picks")
    ctx = context_of(
        d,
        SETTINGS,
        customer=customer(),
        recommendation=rec(buy_again=[1, 3], discover=[1, 2, 99]),
        products=PRODUCTS,
        orders=[],
    )
    names = [b["name"] for b in ctx["blocks"]]
    assert names == ["buy_again", "discover"]
    assert [p["id"] for p in ctx["blocks"][0]["products"]] == [1]  # 3 is out of stock
    assert [p["id"] for p in ctx["blocks"][1]["products"]] == [2]  # 1 already shown, 99 unknown
    card = ctx["blocks"][0]["products"][0]
    assert card["name"] == "Thing 1" and card["price"] == "£1.50" and card["image_url"] is None
    assert (
        card["url"]
        == "https://shop.example/products/S1?utm_source=retain&utm_medium=email&utm_campaign=weekly-picks"
    )
    assert card["reason"] == "r1"
    assert ctx["customer"]["greeting"] == "Ada" and ctx["is_preview"] is False
    assert ctx["unsubscribe_url"].startswith("https://retain.example/u/")


def test_recommendation_without_items_is_skipped() -> None:
    d = find_campaign(TEMPLATES, "weekly-picks")
    with pytest.raises(NoContent, match="no recommendations"):
        context_of(d, SETTINGS, customer=customer(), recommendation=None, products=PRODUCTS, orders=[])
    with pytest.raises(NoContent):
        context_of(
            d, SETTINGS, customer=customer(), recommendation=rec(discover=[3]), products=PRODUCTS, orders=[]
        )


def test_promotion_keeps_the_promoted_category() -> None:
    d = find_campaign(TEMPLATES, "vip-early-access")
    ctx = context_of(
        d,
        SETTINGS,
        customer=customer(first_name=None),
        recommendation=rec(discover=[2, 4, 1]),
        products=PRODUCTS,
        orders=[],
    )
    assert [p["id"] for p in ctx["blocks"][0]["products"]] == [4, 1]
    assert ctx["promotion"]["code"] == "VIPEARLY20" and ctx["promotion"]["expires"] == "27 November 2030"
    assert ctx["customer"]["greeting"] == "there"
    empty = context_of(d, SETTINGS, customer=customer(), recommendation=None, products=PRODUCTS, orders=[])
    assert empty["blocks"] == []  # the offer alone is still an email


def test_post_purchase_feedback_and_similar() -> None:
    d = find_campaign(TEMPLATES, "thank-you-follow-up")
    order = OrderRecord(
        9, "O-9", 5, datetime(2024, 3, 2, 10), "GBP", 6.0, (OrderLineRecord(PRODUCTS[2], 2, 3.0),)
    )
    similar = Block("similar", (RecommendedItem(2, 1.0), RecommendedItem(4, 0.5), RecommendedItem(1, 0.4)))
    ctx = context_of(
        d,
        SETTINGS,
        customer=customer(),
        recommendation=None,
        products=PRODUCTS,
        orders=[order],
        similar=similar,
    )
    assert (
        ctx["order"]["number"] == "O-9"
        and ctx["order"]["date"] == "2 March 2024"
        and ctx["order"]["total"] == "£6.00"
    )
    assert ctx["order"]["lines"][0]["quantity"] == 2 and ctx["order"]["lines"][0]["line_total"] == "£6.00"
    assert [p["id"] for p in ctx["blocks"][0]["products"]] == [
        4,
        1,
    ]  # bought item 2 left out; similar_count 2
    ratings = []
    for star in ctx["feedback"]:
        token = star["url"].rsplit("/", 1)[1]
        fields = verify_token(b"kinds-test", token, FEEDBACK, 1)
        assert (
            fields["order"] == 9 and fields["customer"] == 5 and fields["campaign"] == "thank-you-follow-up"
        )
        ratings.append(fields["rating"])
    assert ratings == [1, 2, 3, 4, 5]
    with pytest.raises(NoContent, match="no order"):
        context_of(d, SETTINGS, customer=customer(), recommendation=None, products=PRODUCTS, orders=[])


def test_winback_last_order_date() -> None:
    d = find_campaign(TEMPLATES, "we-miss-you")
    orders = [OrderRecord(i, f"O{i}", 5, datetime(2023, m, 1), "GBP", 1.0) for i, m in ((1, 4), (2, 9))]
    ctx = context_of(d, SETTINGS, customer=customer(), recommendation=None, products=PRODUCTS, orders=orders)
    assert ctx["last_order_date"] == "1 September 2023" and ctx["promotion"]["discount"] == "15%"
    assert ctx["promotion"]["url"].endswith("utm_campaign=we-miss-you&utm_content=offer")


@pytest.mark.parametrize("name", ["weekly-picks", "vip-early-access", "thank-you-follow-up", "we-miss-you"])
def test_preview_fixtures_build(name: str) -> None:
    d = find_campaign(TEMPLATES, name)
    ctx = build_context(d, SETTINGS, load_fixture(d), is_preview=True)
    assert ctx["is_preview"] is True and ctx["campaign"]["name"] == name
    assert ctx["customer"]["email"].endswith("@example.com")


def test_product_cards_show_catalogue_images_sales_and_only_available_products() -> None:
    from campaigns.kinds.common import block_context, product_card

    on_sale = product(
        7, name="Beeswax Candle", price=9.0, compare_at_price=11.0, image_url="https://cdn.example/c.jpg",
        image_alt="A lit candle", url="https://shop.example.com/products/beeswax-candle",
    )  # fmt: skip
    card = product_card(on_sale, SETTINGS, "weekly")
    assert (card["price"], card["was_price"], card["on_sale"]) == ("£9.00", "£11.00", True)
    assert card["image_alt"] == "A lit candle"
    assert card["url"].startswith("https://shop.example.com/products/beeswax-candle?utm_source=")
    plain = product_card(product(8, compare_at_price=1.0), SETTINGS, "weekly")  # "was" below the price
    assert (plain["was_price"], plain["on_sale"], plain["image_alt"]) == ("", False, "Thing 8")
    shown = {
        1: product(1),
        2: product(2, status="draft"),
        3: product(3, published=False),
        4: product(4, in_stock=False),
        5: product(5, status="archived"),
    }
    block = Block("discover", tuple(RecommendedItem(pid, 1.0) for pid in shown))
    assert [c["id"] for c in block_context(block, "discover", shown, SETTINGS, "weekly", 4)["products"]] == [
        1
    ]


def test_a_name_tile_stands_in_for_a_missing_image() -> None:
    from campaigns.render import CampaignRenderer

    d = find_campaign(TEMPLATES, "weekly-picks")
    ctx = context_of(
        d, SETTINGS, customer=customer(), recommendation=rec(discover=[1]), products=PRODUCTS, orders=[]
    )
    html = CampaignRenderer(d, SETTINGS).render(ctx).html
    assert "<img" not in html and ">Thing 1</span>" in html
