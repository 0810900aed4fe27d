"""What every kind's context shares: customer, shop, links, product cards and recommendation blocks."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition
from campaigns.links import add_utm
from campaigns.money import format_money
from campaigns.store.records import CustomerRecord, OrderRecord, ProductRecord
from campaigns.tokens import unsubscribe_url
from recommender.blocks import Block, Recommendation

BLOCK_TITLES = {
    "buy_again": "Time to stock up?",
    "discover": "Picked for you",
    "popular": "Popular right now",
    "similar": "Goes well with your order",
}
#: an order's lines shown in an email; the rest is "and N more" (a 528-line order would render 248 KB)
ORDER_LINES_SHOWN = 10
_secret_cache: dict[tuple[str, str], bytes] = {}


def secret_key(settings: Settings) -> bytes:
    """The signing key, read once per process (it may live in a file under var_dir)."""
    cache_key = (settings.secret_key, settings.var_dir)
    key = _secret_cache.get(cache_key)
    if key is None:
        key = _secret_cache[cache_key] = settings.resolved_secret_key()
    return key


def money(amount: float | None, currency: str) -> str:
    """``£4.95``; an empty string when the price is unknown (campaigns/money.py)."""
    return format_money(amount, currency)


def long_date(value: date | datetime | None) -> str:
    """``3 March 2025``; empty when unknown."""
    return f"{value.day} {value:%B %Y}" if value else ""


def _clean(text: str | None) -> str:
    """One line of display text: control characters and line breaks become spaces."""
    if not text:
        return ""
    return _clean_cached(text) if len(text) <= 200 else _clean_text(text)


@lru_cache(maxsize=65_536)
def _clean_cached(text: str) -> str:
    # names, categories and reasons repeat across thousands of recipients
    return _clean_text(text)


def _clean_text(text: str) -> str:
    return " ".join("".join(ch if ch >= " " and ch != "\x7f" else " " for ch in text).split())


def display_name(name: str | None) -> str:
    """A product name for people: ALL-CAPS catalogue names become Title Case."""
    name = _clean(name)
    return name.title().replace("'S ", "'s ") if name.isupper() else name


def base_context(
    definition: CampaignDefinition,
    settings: Settings,
    customer: CustomerRecord,
    *,
    run_key: str,
    is_preview: bool,
    issued_at: float | None = None,
) -> dict[str, Any]:
    first = _clean(customer.first_name)
    last = _clean(customer.last_name)
    return {
        "campaign": {"name": definition.name, "kind": definition.kind_plugin.name},
        "customer": {
            "id": customer.id,
            "first_name": first,
            "last_name": last,
            "name": " ".join(p for p in (first, last) if p),
            "greeting": first or "there",
            "email": customer.email or "",
        },
        "shop": {
            "name": _clean(settings.shop_name),
            "url": add_utm(settings.shop_url, settings, definition.name),
            "address": _clean(settings.shop_address),
        },
        "unsubscribe_url": unsubscribe_url(
            settings.public_url,
            secret_key(settings),
            customer_id=customer.id,
            campaign=definition.name,
            issued_at=issued_at,
        ),
        "locale": locale_context(definition.locale or settings.locale),
        "run_key": run_key,
        "is_preview": is_preview,
    }


#: languages written right to left (ISO 639 codes); their emails get dir="rtl"
RTL_LANGUAGES = frozenset("ar arc ckb dv fa he iw khw ks ps sd ug ur yi".split())


def locale_context(locale: str) -> dict[str, str]:
    """``{"lang": "ar-EG", "dir": "rtl"}`` for the email's ``<html lang dir>`` (campaign or shop locale).

    The script subtag wins over the language (``ku-Latn`` is left to right, ``pa-Arab`` right to left).
    """
    lang, direction = _locale(locale)
    return {"lang": lang, "dir": direction}


@lru_cache(maxsize=64)
def _locale(locale: str) -> tuple[str, str]:
    parts = locale.replace("_", "-").split("-")
    script = next((p.title() for p in parts[1:] if len(p) == 4 and p.isalpha()), "")
    rtl = script in {"Arab", "Hebr", "Thaa", "Syrc", "Nkoo", "Adlm", "Rohg"} or (
        not script and parts[0].lower() in RTL_LANGUAGES
    )
    return "-".join(parts), "rtl" if rtl else "ltr"


def product_card(
    product: ProductRecord, settings: Settings, campaign: str, reason: str | None = None
) -> dict[str, Any]:
    """A product as a template sees it: display strings only.

    ``image_url`` None means no image (the card shows a tile with the name); ``image_alt`` is the
    catalogue's alt text, else the name; ``was_price`` is the compare-at price when the product is on
    sale (``on_sale``), shown struck through; ``url`` is the catalogue's page for it (built from its
    handle at import), else ``shop_url/products/<SKU>``.
    """
    return {**_card(product, settings, campaign), "reason": _clean(reason)}


@lru_cache(maxsize=16_384)
def _card(product: ProductRecord, settings: Settings, campaign: str) -> dict[str, Any]:
    # the same product card is shown to many recipients of a campaign; callers copy the dict
    url = product.url or f"{settings.shop_url.rstrip('/')}/products/{product.sku}"
    name = display_name(product.name) or product.sku
    currency = product.currency or settings.currency
    return {
        "id": product.id,
        "name": name,
        "initial": name[:1].upper(),
        "price": money(product.price, currency),
        "was_price": money(product.compare_at_price, currency) if product.on_sale else "",
        "on_sale": product.on_sale,
        "url": add_utm(url, settings, campaign),
        "image_url": product.image_url or None,
        "image_alt": _clean(product.image_alt) or name,
        "category": _clean(product.category),
        "vendor": _clean(product.vendor),
    }


def block_context(
    block: Block | None,
    name: str,
    products: Mapping[int, ProductRecord],
    settings: Settings,
    campaign: str,
    count: int,
) -> dict[str, Any]:
    """A titled list of at most ``count`` product cards (unknown or unavailable products dropped:
    out of stock, draft, archived or unpublished)."""
    cards = []
    for item in block.items if block else ():
        product = products.get(item.product_id)
        if product is None or not product.available:
            continue
        cards.append(product_card(product, settings, campaign, item.reason))
        if len(cards) == count:
            break
    return {
        "name": name,
        "title": BLOCK_TITLES.get(name, name.replace("_", " ").capitalize()),
        "products": cards,
        # why the block is not personal (e.g. a customer the model does not know yet), or None
        "fallback": block.fallback if block is not None and cards else None,
    }


def recommendation_blocks(
    definition: CampaignDefinition,
    settings: Settings,
    recommendation: Recommendation | None,
    products: Mapping[int, ProductRecord],
    *,
    category: str | None = None,
) -> list[dict[str, Any]]:
    """The campaign's blocks, in its order, without empty ones; ``category`` keeps only that category.

    A customer the model does not know (joined after the last training) gets the recommender's stated
    fallback block (``popular``, its ``fallback`` set) even when the campaign does not list ``popular``:
    they get popular products, not a skip for "no recommendations".
    """
    wanted = {item.product_id for b in recommendation.blocks for item in b.items} if recommendation else set()
    seen: set[int] = set()
    blocks = []
    names = list(definition.recommend.blocks)
    if recommendation is not None:
        names += [b.name for b in recommendation.blocks if b.fallback and b.name not in names and b.items]
    for name in names:
        block = recommendation.block(name) if recommendation else None
        if block is not None:
            items = tuple(
                i
                for i in block.items
                if i.product_id in wanted
                and i.product_id not in seen
                and (
                    category is None
                    or (products.get(i.product_id) and products[i.product_id].category == category)
                )
            )
            block = Block(block.name, items, block.fallback)
        ctx = block_context(block, name, products, settings, definition.name, definition.recommend.count)
        seen.update(card["id"] for card in ctx["products"])
        if ctx["products"]:
            blocks.append(ctx)
    return blocks


def order_context(
    order: OrderRecord, settings: Settings, campaign: str, *, shown: int | None = None
) -> dict[str, Any]:
    """The order as a template sees it: its first ``shown`` lines (default ORDER_LINES_SHOWN), and how many
    more there are.

    ``lines`` (each a product card with ``quantity`` and ``line_total``), ``more_lines`` (lines not
    shown; the template says "and N more"), ``line_count``, ``total`` ("" when the order was imported
    without prices).
    """
    currency = order.currency or settings.currency
    shown = ORDER_LINES_SHOWN if shown is None else shown
    return {
        "id": order.id,
        "number": _clean(order.external_id),
        "date": long_date(order.ordered_at),
        "total": money(order.total, currency),
        "lines": [
            dict(
                product_card(line.product, settings, campaign),
                quantity=line.quantity,
                line_total=money(line.line_total, currency),
            )
            for line in order.lines[:shown]
        ],
        "more_lines": max(len(order.lines) - shown, 0),
        "line_count": len(order.lines),
    }
