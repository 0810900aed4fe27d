"""Campaign kinds: each builds the render context for ONE customer from plain data (no queries).

:func:`build_context` is the one entry point; the runner, the CLI and the preview all call it with
records they already hold. A customer who would get an empty email raises :class:`NoContent` (a
skip signal with a ``reason``, not an error): the runner records the skip and moves on.

The context is plain dicts, lists and display-ready strings (prices formatted, links UTM-tagged,
dates written out), so the templates only print and loop; see docs/templates.md for every key.
"""

from __future__ import annotations

from typing import Any

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition
from campaigns.kinds import post_purchase, promotion, recommendation, winback
from campaigns.kinds.common import NoContent, base_context
from campaigns.store.records import CustomerRecord, OrderRecord, ProductRecord
from recommender.blocks import Block, Recommendation

KIND_MODULES = {
    "recommendation": recommendation,
    "promotion": promotion,
    "post_purchase": post_purchase,
    "winback": winback,
}


def build_context(
    definition: CampaignDefinition,
    settings: Settings,
    *,
    customer: CustomerRecord,
    recommendation: Recommendation | None,
    products: dict[int, ProductRecord],
    orders: list[OrderRecord],
    order: OrderRecord | None = None,
    similar: Block | None = None,
    run_key: str = "preview",
    is_preview: bool = False,
) -> dict[str, Any]:
    """The template context for one customer of ``definition``; raises NoContent to skip them.

    ``products`` must hold every product named by ``recommendation``, ``similar`` and the orders'
    lines (lines carry their own product records). ``orders`` are the customer's orders, newest
    first; ``order`` is the one a post-purchase email follows up (default: the newest).
    """
    base = base_context(definition, settings, customer, run_key=run_key, is_preview=is_preview)
    module = KIND_MODULES[definition.kind]
    return module.context(
        definition,
        settings,
        base,
        customer=customer,
        recommendation=recommendation,
        products=products,
        orders=orders,
        order=order,
        similar=similar,
    )


__all__ = ["KIND_MODULES", "NoContent", "build_context"]
