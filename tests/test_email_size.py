"""Emails stay whole: long orders show their first lines and "and N more", the send path refuses an email
above max_email_kb instead of mailing a clipped one, and `retain lint` renders each campaign for the
largest real context in the database and checks the categories it names against the catalogue."""

from __future__ import annotations

import email
import email.policy
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from campaigns.cli.content import lint_campaign, lint_store
from campaigns.definition import find_campaign
from campaigns.kinds import common
from campaigns.runner import run_campaign
from campaigns.senders import memory
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn

from .synthetic import AS_OF, ROOT, shop_settings

TEMPLATES = ROOT / "templates" / "emails"
LINES = 528  # the longest order of the bundled Online Retail data


def _big_shop(store: Any) -> None:
    """One customer with a 528-line order 7 days before AS_OF (a thank-you is due), and a regular."""
    batch = ImportBatch(source="size-test")
    for p in range(LINES):
        category = ("home-decor", "kitchen")[p % 2]
        name = f"SET OF 4 VINTAGE ENAMEL PANTRY STORAGE TINS NO {p:03d}"
        batch.products[f"P{p:03d}"] = ProductIn(f"P{p:03d}", name, 4.95, "GBP", category=category)
    batch.customers["big"] = CustomerIn(
        "big", email="big@example.com", first_name="Bea", marketing_consent=True, consent_source="test"
    )
    lines = [(f"P{p:03d}", 2, 4.95) for p in range(LINES)]
    batch.orders["O-BIG"] = OrderIn("O-BIG", "big", AS_OF - timedelta(days=7, hours=2), "GBP", lines)
    store.write_import(batch)


@pytest.fixture
def big(store: Any, tmp_path: Path) -> dict[str, Any]:
    _big_shop(store)
    memory.clear()
    return {"store": store, "settings": shop_settings(tmp_path, holdout_share=0.0)}


def test_a_long_order_shows_its_first_lines_and_how_many_more(big: dict[str, Any]) -> None:
    order = big["store"].longest_order()
    ctx = common.order_context(order, big["settings"], "thank-you")
    assert len(ctx["lines"]) == common.ORDER_LINES_SHOWN == 10
    assert (ctx["more_lines"], ctx["line_count"]) == (LINES - 10, LINES)
    assert ctx["total"] == "£5,227.20"  # the whole order's total, not the shown lines'


def test_the_thank_you_for_the_longest_order_stays_under_the_limit(big: dict[str, Any]) -> None:
    s = big["settings"]
    d = find_campaign(ROOT / "templates", "thank-you-follow-up")
    summary = run_campaign(big["store"], s, d, sender="memory://", run_key="t1")
    assert summary.sent == 1
    [sent] = memory.outbox()
    message = email.message_from_bytes(sent.data, policy=email.policy.default)
    html = message.get_body(("html",)).get_content()  # type: ignore[union-attr]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert len(html.encode()) < 30 * 1024  # 248 KB when every line was listed
    assert "and 518 more items" in html and "- and 518 more items" in text
    assert "Order total: £5,227.20" in text


def test_send_refuses_an_email_above_the_limit(big: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "ORDER_LINES_SHOWN", 10_000)  # every line, as before
    s = big["settings"]
    d = find_campaign(ROOT / "templates", "thank-you-follow-up")
    summary = run_campaign(big["store"], s, d, sender="memory://", run_key="t1")
    assert summary.sent == 0 and summary.skipped == {"email too large (HTML over 100 KB)": 1}
    assert memory.outbox() == []


def test_lint_renders_the_largest_real_context(big: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    s, store = big["settings"], big["store"]
    path = TEMPLATES / "thank-you-follow-up.mjml"
    assert lint_campaign(path, s, store) == []
    monkeypatch.setattr(common, "ORDER_LINES_SHOWN", 10_000)
    [problem] = lint_campaign(path, s, store)
    assert "KB of HTML for the longest order in the database (O-BIG, 528 lines)" in problem
    assert "above max_email_kb (100 KB)" in problem and "`retain send` refuses it" in problem


def test_lint_names_unknown_promotion_categories(big: dict[str, Any], tmp_path: Path) -> None:
    s, store = big["settings"], big["store"]
    source = (TEMPLATES / "vip-early-access.mjml").read_text()
    emails = tmp_path / "templates" / "emails"
    emails.mkdir(parents=True)
    for sub in ("layouts", "partials"):
        (tmp_path / "templates" / sub).symlink_to(ROOT / "templates" / sub)
    (emails / "vip-early-access.preview.json").write_text(
        (TEMPLATES / "vip-early-access.preview.json").read_text()
    )
    path = emails / "vip-early-access.mjml"
    assert lint_campaign(TEMPLATES / "vip-early-access.mjml", s, store) == []  # home-decor exists
    path.write_text(source.replace("category: home-decor}", "category: home}"))
    [problem] = lint_campaign(path, s, store)
    assert (
        "promotion.category 'home' is not a category of the catalogue; did you mean 'home-decor'?" in problem
    )
    path.write_text(source.replace("category: home-decor}", "category: Kitchen}"))
    [problem] = lint_campaign(path, s, store)
    assert "did you mean 'kitchen'?" in problem
    # a category whose products cannot be shown: every email would go out empty
    store.set_product_stock("P001", False)
    for p in range(3, LINES, 2):
        store.set_product_stock(f"P{p:03d}", False)
    path.write_text(source.replace("category: home-decor}", "category: kitchen}"))
    [problem] = lint_campaign(path, s, store)
    assert "none of its 264 products can be shown" in problem


def test_lint_without_a_database_does_not_create_one(tmp_path: Path) -> None:
    s = shop_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'missing.db'}")
    assert lint_store(s) is None and not (tmp_path / "missing.db").exists()
