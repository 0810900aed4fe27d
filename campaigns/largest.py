"""What ``retain lint`` checks against the real database: the largest email a campaign can make, and the
catalogue names a campaign uses.

**The largest real context.** Every campaign is rendered, through the email factory, for the biggest
recipient the database holds: the customer of the longest order (most lines), that order as the member's
order and their latest orders, every recommendation block of the campaign full (``recommend.count``
products each, and ``follow_up.similar_count`` similar items) with the shop's longest-named products that
may be shown, and for catalogue-news kinds as many news as the campaign lists. Its HTML must stay under
the ``max_email_kb`` setting (Gmail clips above ~102 KB, hiding the rest of the email, the unsubscribe
footer included); the send path refuses any bigger email, so lint says so first.

**Catalogue names.** A promotion's ``category`` and a campaign's ``recommend.only_categories`` /
``exclude_categories`` must be categories of the catalogue (exactly as the catalogue spells them), and
a promoted category must have a product that can be shown (active, published, in stock) — otherwise
every email of the promotion goes out without products.
"""

from __future__ import annotations

import difflib
from typing import Any

from campaigns.definition import CampaignDefinition
from campaigns.kinds import ContextInputs, Member
from campaigns.store.base import utcnow
from campaigns.store.records import ProductEventRecord, ProductRecord, PurchaseHistory
from recommender.blocks import SIMILAR, Block, Recommendation, RecommendedItem


def largest_inputs(definition: CampaignDefinition, store: Any) -> tuple[Member, ContextInputs, str] | None:
    """The member and inputs of the campaign's largest real email, with a description; None when the
    database has no orders."""
    order = store.longest_order()
    if order is None:
        return None
    customer = store.customers_by_ids([order.customer_id])[order.customer_id]
    needs = definition.kind_plugin.needs
    spec = definition.recommend
    category = definition.promotion.category if definition.promotion else None
    similar_n = definition.follow_up.similar_count if definition.follow_up else spec.count
    news_n = max(int(getattr(definition.options.get("back_in_stock"), "count", 0) or 0), 0)
    wanted = spec.count * len(spec.blocks) + similar_n + 2 * news_n
    products: list[ProductRecord] = store.longest_named_products(wanted, category)
    if category is not None and len(products) < wanted:  # the category is small: fill the other blocks
        products += [p for p in store.longest_named_products(wanted) if p not in products][
            : wanted - len(products)
        ]
    by_id = {p.id: p for p in products}
    reason = f"Because you bought {products[0].name}" if products else None
    blocks, pos = [], 0
    for name in spec.blocks:
        chosen = products[pos : pos + spec.count]
        pos += spec.count
        blocks.append(Block(name, tuple(RecommendedItem(p.id, 1.0, reason) for p in chosen)))
    similar = Block(
        SIMILAR, tuple(RecommendedItem(p.id, 1.0, reason) for p in products[pos : pos + similar_n])
    )
    now = utcnow()
    news = products[:news_n]
    events = tuple(
        ProductEventRecord(n, p.id, p.sku, kind, (p.price or 0.0) * 2, p.price, now)
        for n, (p, kind) in enumerate(
            ((p, k) for p in news for k in ("back_in_stock", "price_drop")), start=1
        )
    )
    orders = store.orders_for_customers([customer.id], limit_per_customer=max(needs.orders, 1))[customer.id]
    inputs = ContextInputs(
        customer=customer,
        recommendation=Recommendation(customer.id, tuple(blocks)),
        products=by_id,
        orders=tuple(orders),
        order=order,
        similar=similar,
        events=events,
        bought=PurchaseHistory(frozenset(p.id for p in news)),
    )
    what = (
        f"the longest order in the database ({order.external_id}, {len(order.lines)} lines) and every "
        f"product block full ({len(products)} products)"
    )
    return Member(customer, order), inputs, what


def catalogue_problems(definition: CampaignDefinition, store: Any, where: str) -> list[str]:
    """Categories the campaign names that the catalogue does not have (or cannot show); [] when fine or
    when the catalogue has no categories at all."""
    counts: dict[str, tuple[int, int]] = store.category_counts()
    if not counts:
        return []
    named: list[tuple[str, str]] = []
    if definition.promotion and definition.promotion.category:
        named.append(("promotion.category", definition.promotion.category))
    promoted = definition.promotion.category if definition.promotion else None
    # a promotion's category also narrows recommend.only_categories: name it once
    named += [("recommend.only_categories", c) for c in definition.recommend.only_categories if c != promoted]
    named += [("recommend.exclude_categories", c) for c in definition.recommend.exclude_categories]
    problems = []
    for key, category in named:
        if category in counts:
            if key != "recommend.exclude_categories" and counts[category][1] == 0:
                problems.append(
                    f"{where}: {key} {category!r}: none of its {counts[category][0]} products can be shown "
                    "(all out of stock, draft, archived or unpublished): every email would have no products"
                )
            continue
        spelled = [c for c in counts if c.lower() == category.lower()]
        near = spelled or difflib.get_close_matches(category, list(counts), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(repr(c) for c in near)}?" if near else ""
        known = ", ".join(sorted(counts)[:12]) + (" ..." if len(counts) > 12 else "")
        problems.append(
            f"{where}: {key} {category!r} is not a category of the catalogue{hint} (known: {known})"
        )
    return problems
