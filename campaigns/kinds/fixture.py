"""Preview fixtures: ``<campaign>.preview.json`` beside each email, read into the records the email
factory builds from (:class:`~campaigns.kinds.ContextInputs`), so a preview runs exactly the code a
send runs (:meth:`campaigns.factory.EmailFactory.prepare_inputs`).

Shape (every key but ``customer`` optional)::

    {"customer": {"id": 1, "first_name": "Ada", "email": "ada@example.com", ...},
     "products": [{"id": 7, "sku": "85123A", "name": "...", "price": 2.55, "category": "home",
                   "image_url": null, "url": null, "in_stock": true,
                   "image_alt": null, "compare_at_price": null, "status": "active", "vendor": null}],
     "recommendation": {"buy_again": [{"product_id": 7, "score": 0.9, "reason": "..."}], ...},
     "orders": [{"id": 10, "external_id": "536365", "ordered_at": "2011-11-20T10:00:00",
                 "lines": [{"product_id": 7, "quantity": 6, "unit_price": 2.55}]}],
     "similar": [{"product_id": 8, "score": 0.4}],
     "events": [{"product_id": 7, "kind": "price_drop", "old_value": 2.95, "new_value": 2.55}]}

``events`` (catalogue news: ``back_in_stock`` / ``price_drop``) are dated now unless they give
``created_at``; what the customer ``bought`` is every product of the fixture's orders.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from campaigns.definition import CampaignDefinition
from campaigns.errors import NotFoundError, TemplateError
from campaigns.kinds.base import ContextInputs, Member
from campaigns.store.records import (
    CustomerRecord,
    OrderLineRecord,
    OrderRecord,
    ProductEventRecord,
    ProductRecord,
    PurchaseHistory,
)
from recommender.blocks import SIMILAR, Block, Recommendation, RecommendedItem


def _items(raw: list[dict[str, Any]]) -> tuple[RecommendedItem, ...]:
    return tuple(
        RecommendedItem(
            product_id=int(i["product_id"]),
            score=float(i.get("score", 0.0)),
            reason=i.get("reason"),
            because_product_id=i.get("because_product_id"),
        )
        for i in raw
    )


def parse_fixture(data: dict[str, Any], currency: str = "GBP") -> ContextInputs:
    """The context inputs of the fixture's customer (its newest order is the member's order)."""
    c = data["customer"]
    customer = CustomerRecord(
        id=int(c.get("id", 1)),
        external_id=str(c.get("external_id", c.get("id", 1))),
        email=c.get("email"),
        first_name=c.get("first_name"),
        last_name=c.get("last_name"),
        country=c.get("country"),
        timezone=c.get("timezone"),
        marketing_consent=bool(c.get("marketing_consent", True)),
        consent_source=c.get("consent_source"),
        is_demo=bool(c.get("is_demo", True)),
    )
    products = {
        int(p["id"]): ProductRecord(
            id=int(p["id"]),
            sku=str(p.get("sku", p["id"])),
            name=str(p["name"]),
            price=p.get("price"),
            currency=p.get("currency", currency),
            url=p.get("url"),
            image_url=p.get("image_url"),
            category=p.get("category"),
            in_stock=bool(p.get("in_stock", True)),
            image_alt=p.get("image_alt"),
            compare_at_price=p.get("compare_at_price"),
            status=str(p.get("status", "active")),
            published=bool(p.get("published", True)),
            vendor=p.get("vendor"),
        )
        for p in data.get("products", [])
    }
    recommendation = Recommendation(
        customer.id,
        tuple(Block(name, _items(items)) for name, items in data.get("recommendation", {}).items()),
    )
    orders = []
    for o in data.get("orders", []):
        lines = tuple(
            OrderLineRecord(
                products[int(li["product_id"])],
                int(li["quantity"]),
                None if li.get("unit_price") is None else float(li["unit_price"]),
            )
            for li in o.get("lines", [])
        )
        orders.append(
            OrderRecord(
                id=int(o["id"]),
                external_id=str(o.get("external_id", o["id"])),
                customer_id=customer.id,
                ordered_at=datetime.fromisoformat(o["ordered_at"]),
                currency=o.get("currency", currency),
                total=None
                if any(li.line_total is None for li in lines)
                else round(sum(li.line_total or 0.0 for li in lines), 2),
                lines=lines,
            )
        )
    orders.sort(key=lambda o: o.ordered_at, reverse=True)
    similar = Block(SIMILAR, _items(data["similar"])) if "similar" in data else None
    now = datetime.now(UTC).replace(tzinfo=None)
    events = tuple(
        ProductEventRecord(
            id=n,
            product_id=int(e["product_id"]),
            sku=products[int(e["product_id"])].sku,
            kind=str(e["kind"]),
            old_value=e.get("old_value"),
            new_value=e.get("new_value"),
            created_at=datetime.fromisoformat(e["created_at"]) if e.get("created_at") else now,
        )
        for n, e in enumerate(data.get("events", []), start=1)
    )
    bought_lines = [line.product for o in orders for line in o.lines]
    bought = PurchaseHistory(
        frozenset(p.id for p in bought_lines), frozenset(p.category for p in bought_lines if p.category)
    )
    return ContextInputs(
        customer=customer,
        recommendation=recommendation,
        products=products,
        orders=tuple(orders),
        order=orders[0] if orders else None,
        similar=similar,
        events=events,
        bought=bought,
    )


def fixture_member(inputs: ContextInputs) -> Member:
    return Member(inputs.customer, inputs.order)


def load_fixture(definition: CampaignDefinition, currency: str = "GBP") -> ContextInputs:
    """Read ``<campaign>.preview.json``; NotFoundError when absent, TemplateError when malformed."""
    path: Path = definition.preview_path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFoundError(f"{definition.name}: no preview fixture at {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TemplateError(f"preview fixture is not valid JSON: {exc}", template=str(path)) from None
    try:
        return parse_fixture(data, currency)
    except (KeyError, TypeError, ValueError) as exc:
        raise TemplateError(
            f"preview fixture is malformed ({type(exc).__name__}: {exc})", template=str(path)
        ) from None
