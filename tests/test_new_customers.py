"""Customers who joined after the last training get the recommender's stated popular fallback instead of
being skipped with "no recommendations" — on two real shops (Online Retail and the Groceries baskets),
imported and trained with the real `retain` commands."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from campaigns.clock import reference_now
from campaigns.definition import find_campaign
from campaigns.factory import BuildOptions, EmailFactory, Prepared, campaign_recommender
from campaigns.kinds import Member
from campaigns.models import Customer, Order, OrderLine, Product
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn

from .real_shops import TEMPLATES, Shop, build_shop


@pytest.fixture(scope="module", params=["online-retail", "groceries"])
def real_shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    yield from build_shop(request.param, tmp_path_factory.mktemp(request.param))


def _newcomer(shop: Shop) -> Member:
    """A customer imported after training, with one order of the shop's best-selling product."""
    store = shop.store
    with store.engine.connect() as conn:
        sku, name, price, currency, category = conn.execute(
            select(Product.sku, Product.name, Product.price, Product.currency, Product.category)
            .join(OrderLine, OrderLine.product_id == Product.id)
            .group_by(Product.sku, Product.name, Product.price, Product.currency, Product.category)
            .order_by(func.count().desc())
            .limit(1)
        ).one()
    now = reference_now(shop.settings, store)
    batch = ImportBatch(source="generic")
    batch.products[sku] = ProductIn(sku, name, price, currency, category=category)  # as it is
    batch.customers["NEW-1"] = CustomerIn(
        "NEW-1", email="newcomer@example.com", first_name="Nia", marketing_consent=True, consent_source="test"
    )
    batch.orders["NEW-ORDER-1"] = OrderIn(
        "NEW-ORDER-1", "NEW-1", now - timedelta(days=1), currency, [(sku, 1, None)]
    )
    store.write_import(batch)
    with store.engine.connect() as conn:
        cid = conn.execute(select(Customer.id).where(Customer.external_id == "NEW-1")).scalar_one()
    return Member(store.customers_by_ids([cid])[cid])


@pytest.mark.slow
def test_a_customer_unknown_to_the_model_gets_the_stated_popular_fallback(real_shop: Shop) -> None:
    shop = real_shop
    definition = find_campaign(TEMPLATES, "weekly-picks")  # blocks: buy_again, discover (no popular)
    assert "popular" not in definition.recommend.blocks
    newcomer = _newcomer(shop)
    recommender = campaign_recommender(definition, shop.settings, shop.store)
    assert recommender is not None
    factory = EmailFactory(shop.settings, definition, catalogue=shop.store, recommender=recommender,
                           options=BuildOptions(run_key="new-customers"))  # fmt: skip
    (item,) = factory.prepare([newcomer])
    assert isinstance(item, Prepared), item
    blocks = item.context["blocks"]
    assert [b["name"] for b in blocks] == ["popular"]
    assert blocks[0]["products"] and "unknown to the model" in (blocks[0]["fallback"] or "")
    assert blocks[0]["title"] in item.rendered.text  # stated in the email: "Popular right now"
    # a customer the model knows still gets the campaign's own blocks, with no fallback
    with shop.store.engine.connect() as conn:
        known_id = conn.execute(
            select(Order.customer_id).where(Order.customer_id != newcomer.customer.id).limit(1)
        ).scalar_one()
    known = Member(replace(shop.store.customers_by_ids([known_id])[known_id], email="known@example.com"))
    (other,) = factory.prepare([known])
    if isinstance(other, Prepared):
        assert {b["name"] for b in other.context["blocks"]} <= {"buy_again", "discover"}
