"""Campaign kinds are plug-ins: the registry, a kind's own front-matter options, its audience hook, and
the first-purchase upsell (one module + its template) end to end; a kind from outside the package by
dotted path."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition, find_campaign, load_campaign
from campaigns.errors import NotFoundError, TemplateError
from campaigns.kinds import (
    CampaignKind,
    ContextInputs,
    DataNeeds,
    KindBase,
    ModelUse,
    builtin_kinds,
    resolve_kind,
)
from campaigns.runner import run_campaign
from campaigns.senders import memory
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn
from campaigns.training import load_recommender, train_model

from .synthetic import AS_OF, ROOT, shop_settings

TEMPLATES = ROOT / "templates"


def test_every_builtin_kind_satisfies_the_protocol_and_is_found_by_name() -> None:
    kinds = builtin_kinds()
    assert {"recommendation", "promotion", "post_purchase", "winback", "first_purchase"} <= set(kinds)
    for name, kind in kinds.items():
        assert isinstance(kind, CampaignKind) and kind.name == name and kind.description
        assert resolve_kind(name) is kind
    assert kinds["recommendation"].needs.model is ModelUse.REQUIRED
    assert kinds["post_purchase"].needs.model is ModelUse.OPTIONAL
    with pytest.raises(NotFoundError, match="unknown kind 'newsletter'"):
        resolve_kind("newsletter")


def test_every_starter_campaign_resolves_to_its_kind() -> None:
    for path in sorted((TEMPLATES / "emails").glob("*.mjml")):
        d = load_campaign(path)
        assert d.kind_plugin.name == d.kind


def _write(tmp_path: Path, front: str) -> Path:
    path = tmp_path / "emails" / "c.mjml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n" + front + "---\n<mjml><mj-body></mj-body></mjml>\n")
    return path


@pytest.mark.parametrize(
    ("front", "line", "needle"),
    [
        (
            "kind: first_purchase\nsubject: s\nfirst_purchase: {count: 40}\n",
            4,
            "first_purchase.count must be at most 12",
        ),
        (
            "kind: first_purchase\nsubject: s\nfirst_purchase:\n  window_days: 0\n",
            5,
            "window_days must be an integer >= 1",
        ),
        (
            "kind: first_purchase\nsubject: s\nfollow_up: {days_after_order: 2}\n",
            4,
            "'follow_up' only applies to kind: post_purchase",
        ),
        (
            "kind: recommendation\nsubject: s\nfirst_purchase: {count: 2}\n",
            4,
            "only applies to kind: first_purchase",
        ),
    ],
)
def test_a_kinds_own_options_are_validated_through_it(
    tmp_path: Path, front: str, line: int, needle: str
) -> None:
    path = _write(tmp_path, front)
    with pytest.raises(TemplateError) as info:
        load_campaign(path)
    assert needle in str(info.value) and str(info.value).startswith(f"{path}:{line}:")


def test_first_purchase_options_and_defaults(tmp_path: Path) -> None:
    d = load_campaign(_write(tmp_path, "kind: first_purchase\nsubject: s\n"))
    spec = d.options["first_purchase"]
    assert (spec.days_after_order, spec.window_days, spec.count) == (3, 3, 4) and d.promotion is None
    starter = find_campaign(TEMPLATES, "first-purchase-upsell")
    assert starter.promotion is not None and starter.options["first_purchase"].count == 4


# ---------------------------------------------------------------------------- the upsell end to end


def _first_purchase_shop(store: Any) -> dict[str, str]:
    """Customers whose first order is 1, 4 or 10 days before AS_OF, one with a second order since, and
    regulars; returns {role: email}."""
    batch = ImportBatch(source="first-purchase-test")
    for p in range(12):
        batch.products[f"P{p}"] = ProductIn(
            f"P{p}", f"Product {p}", 3.0 + p, "GBP", category=("a", "b")[p % 2]
        )
    roles = {
        "due_a": [4],
        "due_b": [5],
        "too_new": [1],
        "too_old": [10],
        "came_back": [5, 2],
    }
    emails = {}
    n = 0
    for role, ages in roles.items():
        key = f"C-{role}"
        emails[role] = f"{role}@example.com"
        batch.customers[key] = CustomerIn(
            key, email=emails[role], first_name=role, timezone="Europe/London", marketing_consent=True,
            consent_source="test",
        )  # fmt: skip
        for age in ages:
            n += 1
            lines = [(f"P{n % 6}", 1, 3.0), (f"P{(n + 1) % 6}", 2, 4.0)]
            batch.orders[f"O{n}"] = OrderIn(f"O{n}", key, AS_OF - timedelta(days=age, hours=1), "GBP", lines)
    # regulars: give the model co-purchases to learn from
    for c in range(40):
        key = f"R{c}"
        batch.customers[key] = CustomerIn(key, email=f"r{c}@example.com", marketing_consent=True)
        for k in range(3):
            n += 1
            lines = [(f"P{(c + k) % 6}", 1, 3.0), (f"P{6 + (c + k) % 6}", 1, 3.0)]
            batch.orders[f"O{n}"] = OrderIn(f"O{n}", key, AS_OF - timedelta(days=20 + k * 9), "GBP", lines)
    store.write_import(batch)
    return emails


@pytest.fixture
def upsell_shop(store: Any, tmp_path: Path) -> dict[str, Any]:
    settings = shop_settings(tmp_path, holdout_share=0.0)
    emails = _first_purchase_shop(store)
    train_model(store, settings)
    memory.clear()
    return {
        "store": store,
        "settings": settings,
        "emails": emails,
        "model": load_recommender(settings, store),
    }


def test_first_purchase_upsell_mails_one_time_buyers_once(upsell_shop: dict[str, Any]) -> None:
    s: Settings = upsell_shop["settings"]
    store = upsell_shop["store"]
    d = find_campaign(Path(s.templates_dir), "first-purchase-upsell")
    summary = run_campaign(store, s, d, recommender=upsell_shop["model"], sender="memory://", run_key="day1")
    got = Counter(m.rcpt_to for m in memory.outbox())
    emails = upsell_shop["emails"]
    assert set(got) == {emails["due_a"], emails["due_b"]} and set(got.values()) == {1}
    assert summary.sent == 2 and summary.status == "completed"
    message = memory.outbox()[0].data.decode()
    assert "first order" in message and "WELCOME10" in message
    # the next day's tick (another run key): each first order is followed up once per campaign
    again = run_campaign(
        store, s, d, recommender=upsell_shop["model"], sender="memory://", run_key="day2",
        now=AS_OF + timedelta(days=1),
    )  # fmt: skip
    assert again.sent == 0 and len(memory.outbox()) == 2


def test_first_purchase_without_a_model_is_skipped_with_a_reason(upsell_shop: dict[str, Any]) -> None:
    s: Settings = upsell_shop["settings"]
    d = find_campaign(Path(s.templates_dir), "first-purchase-upsell")
    summary = run_campaign(upsell_shop["store"], s, d, recommender=None, sender="memory://", run_key="x")
    assert summary.sent == 0 and summary.skipped == {"no products to suggest": 2}


# ---------------------------------------------------------------------------- a kind from outside


@dataclass(frozen=True)
class _Greeting:
    text: str


class BirthdayKind(KindBase):
    """A kind a shop could ship in its own package: no model, one option of its own."""

    name = "birthday"
    description = "a birthday greeting"
    needs = DataNeeds()

    def __init__(self) -> None:
        from campaigns.kinds import OptionSpec

        def parse(fm: Any, key: str) -> _Greeting:
            raw = fm.mapping(key, {"text"})
            return _Greeting(str(raw.get("text", "Happy birthday")))

        self.options = {"greeting": OptionSpec(parse, required=True, hint="(text)")}

    def context(
        self, definition: CampaignDefinition, settings: Settings, base: dict[str, Any], inputs: ContextInputs
    ) -> dict[str, Any]:
        return dict(base, greeting=definition.options["greeting"].text)


BIRTHDAY = BirthdayKind()


def test_a_kind_named_by_dotted_path_sends(store: Any, tmp_path: Path) -> None:
    from .synthetic import make_shop

    make_shop(store, customers=5)
    templates = tmp_path / "templates"
    for part in ("layouts", "partials"):
        import shutil

        shutil.copytree(TEMPLATES / part, templates / part)
    (templates / "emails").mkdir()
    source = (
        "---\nname: bday\nkind: tests.test_kinds_plugins:BIRTHDAY\nsubject: '{{ greeting }}, {{ customer.greeting }}'\n"
        "segment: active-buyers\n{options}---\n"
        '{{% extends "layouts/base.mjml" %}}{{% block content %}}<mj-section><mj-column><mj-text>{{{{ greeting }}}}'
        "</mj-text></mj-column></mj-section>{{% endblock %}}\n"
    )
    (templates / "emails" / "bday.mjml").write_text(source.format(options=""))
    with pytest.raises(TemplateError, match="needs a 'greeting:' mapping"):
        find_campaign(templates, "bday")
    (templates / "emails" / "bday.mjml").write_text(
        source.format(options="greeting: {text: Many happy returns}\n")
    )
    s = shop_settings(tmp_path, templates_dir=str(templates), holdout_share=0.0)
    memory.clear()
    summary = run_campaign(store, s, find_campaign(templates, "bday"), sender="memory://", run_key="b")
    assert summary.sent == 5
    assert all(b"Many happy returns" in m.data for m in memory.outbox())
