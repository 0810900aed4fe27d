"""Preview app and dashboard over HTTP (Starlette TestClient), on a tiny shop with known answers."""

from __future__ import annotations

import re
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from campaigns.config import Settings
from campaigns.store import Store
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn
from recommender.blocks import Block, Recommendation, RecommendedItem

ROOT = Path(__file__).resolve().parent.parent
AS_OF = datetime(2024, 3, 1)

#: (shop id, email, first name, [(days before AS_OF, [(sku, qty, price)])])
CUSTOMERS: list[tuple[str, str, str, list[tuple[int, list[tuple[str, int, float]]]]]] = [
    (
        "C1",
        "ann@example.test",
        "Ann",
        [(80, [("SKU1", 2, 5.0)]), (40, [("SKU2", 1, 12.0)]), (9, [("SKU3", 1, 8.0)])],
    ),
    ("C2", "bob@example.test", "Bob", [(70, [("SKU1", 1, 5.0)]), (20, [("SKU1", 3, 5.0)])]),
    ("C3", "cy@example.test", "Cy", [(60, [("SKU2", 2, 12.0)])]),
    ("C4", "dee@example.test", "Dee", [(50, [("SKU3", 1, 8.0)]), (8, [("SKU4", 1, 20.0)])]),
]
PRODUCTS = [
    ("SKU1", "RED TEA CUP", 5.0),
    ("SKU2", "OAK TRAY", 12.0),
    ("SKU3", "LINEN NAPKIN", 8.0),
    ("SKU4", "GLASS JUG", 20.0),
]


class StubRecommender:
    """Recommends every product the customer has not bought, with a reason (known answer)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def recommend(self, ids: list[int], *, blocks: Any, n: int, rules: Any = None) -> list[Recommendation]:
        products = {p.sku: p.id for p in self.store.all_products()}
        out = []
        for cid in ids:
            bought = {
                line.product.id for o in self.store.orders_for_customers([cid])[cid] for line in o.lines
            }
            items = tuple(
                RecommendedItem(pid, 1.0 / (i + 1), reason=f"Because you bought item {sorted(bought)[0]}")
                for i, pid in enumerate(p for p in products.values() if p not in bought)
            )[:n]
            out.append(Recommendation(cid, (Block("discover", items),)))
        return out

    def similar_items(self, bought: list[int], *, n: int, rules: Any = None) -> Block:
        others = [p.id for p in self.store.all_products() if p.id not in bought][:n]
        return Block("similar", tuple(RecommendedItem(pid, 0.5) for pid in others))


def make_shop(tmp_path: Path, **overrides: Any) -> tuple[Store, Settings]:
    """A SQLite shop of 4 customers, a copy of the bundled templates, memory sender, fixed clock."""
    templates = tmp_path / "templates"
    if not templates.exists():
        shutil.copytree(ROOT / "templates", templates)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'retain.db'}",
        var_dir=str(tmp_path / "var"),
        templates_dir=str(templates),
        secret_key="web-test-secret",
        sender="memory://web",
        as_of=AS_OF.isoformat(),
        public_url="https://shop.example.test/r",
        quiet_hours="",
        **overrides,
    )
    store = Store.open(settings.database_url)
    batch = ImportBatch(source="generic")
    for sku, name, price in PRODUCTS:
        batch.products[sku] = ProductIn(sku, name, price, "GBP", url=f"https://shop.example.test/p/{sku}")
    for shop_id, email, first, orders in CUSTOMERS:
        batch.customers[shop_id] = CustomerIn(shop_id, email, first, "Tester", marketing_consent=True)
        for k, (days, lines) in enumerate(orders):
            oid = f"{shop_id}-{k}"
            batch.orders[oid] = OrderIn(oid, shop_id, AS_OF - timedelta(days=days), "GBP", list(lines))
    store.write_import(batch)
    return store, settings


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Store, Settings]]:
    store, settings = make_shop(tmp_path)
    try:
        yield store, settings
    finally:
        store.close()


with warnings.catch_warnings():  # starlette 1.x asks for httpx2; httpx works the same here
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


PREVIEW_ORIGIN = "http://127.0.0.1:8024"
_CSRF_RE = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


class PreviewClient(TestClient):
    """A browser-like client of the preview: its POSTs carry the page's Origin and the session's
    anti-CSRF token (read from a campaign page, as a browser's form would), unless ``csrf=False``."""

    token: str | None = None

    def csrf_token(self) -> str:
        if self.token is None:
            match = _CSRF_RE.search(self.get("/campaigns/weekly-picks").text)
            assert match is not None, "no csrf_token in the campaign page"
            self.token = match.group(1)
        return self.token

    def post(self, url: Any, *, data: Any = None, csrf: bool = True, **kwargs: Any) -> Any:  # type: ignore[override]
        if csrf:
            data = {**(data or {}), "csrf_token": self.csrf_token()}
            kwargs["headers"] = {"origin": PREVIEW_ORIGIN, **(kwargs.get("headers") or {})}
        return super().post(url, data=data, **kwargs)


def preview_client(store: Store, settings: Settings, **kwargs: Any) -> PreviewClient:
    from campaigns.web.preview_app import create_preview_app

    kwargs.setdefault("recommender", StubRecommender(store))
    app = create_preview_app(store, settings, segments_file=ROOT / "segments.yaml", watch=False, **kwargs)
    return PreviewClient(app, base_url=PREVIEW_ORIGIN)


def test_index_lists_campaigns_with_kind_segment_size_schedule_and_lint(shop: Any) -> None:
    store, settings = shop
    with preview_client(store, settings) as client:
        page = client.get("/").text
    rows = {
        m.group(1): m.group(0) for m in re.finditer(r'<tr data-campaign="([a-z-]+)">.*?</tr>', page, re.S)
    }
    files = sorted(p.stem for p in (Path(settings.templates_dir) / "emails").glob("*.mjml"))
    assert sorted(rows) == files  # every campaign file, whatever the shop added
    assert {"thank-you-follow-up", "vip-early-access", "we-miss-you", "weekly-picks"} <= set(rows)
    # active-buyers = two or more orders, the last within 90 days: Ann, Bob and Dee; a send would mail two
    # of them (all have consent; the campaign's deterministic 10 % holdout draws one of the three)
    assert (
        'data-eligible="2"><span title="2 of 3 segment members would be mailed now (all judged); not mailed: holdout 1">2</span>'
        in rows["weekly-picks"]
    )
    assert "of 3 in the segment" in rows["weekly-picks"]
    assert "recommendation" in rows["weekly-picks"] and "cron &#39;0 9 * * MON&#39;" in rows["weekly-picks"]
    assert all("✓ ok" in row for row in rows.values())


def test_a_broken_template_shows_its_lint_problem(shop: Any) -> None:
    store, settings = shop
    path = Path(settings.templates_dir) / "emails" / "weekly-picks.mjml"
    path.write_text(
        path.read_text().replace("{% block content %}", "{% block content %}{{ nope.missing }}", 1)
    )
    with preview_client(store, settings) as client:
        index = client.get("/").text
        page = client.get("/campaigns/weekly-picks").text
    assert "1 problem" in index and "nope" in index
    assert "Cannot render." in page and "nope" in page


def test_fixture_preview_shows_subject_preheader_sender_text_headers_and_source(shop: Any) -> None:
    store, settings = shop
    with preview_client(store, settings) as client:
        page = client.get("/campaigns/weekly-picks").text
    assert 'Rendered for <strong id="source-label">preview fixture</strong>' in page
    assert 'id="subject">Ada, new picks for you<' in page
    assert "From Retain Demo Shop &lt;hello@shop.example.com&gt;" in page
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in page
    assert "name: weekly-picks" in page  # the source tab
    assert 'id="text">' in page and "Unsubscribe" in page


def test_pick_a_customer_by_email_keeps_the_email_out_of_the_url(shop: Any) -> None:
    store, settings = shop
    ann = store.get_customer("ann@example.test")
    assert ann is not None
    with preview_client(store, settings) as client:
        response = client.post(
            "/campaigns/weekly-picks/customer",
            data={"q": "ANN@example.test", "width": "mobile"},
            follow_redirects=False,
        )
        assert response.status_code == 303
        location = response.headers["location"]
        assert location == f"/campaigns/weekly-picks?customer={ann.id}&width=mobile"
        page = client.get(location).text
        email = client.get(f"/campaigns/weekly-picks/email.html?customer={ann.id}")
    assert 'id="subject">Ann, new picks for you<' in page
    assert "Because you bought item" in page  # the recommendation's reason, beside the email
    assert 'class="device mobile"' in page
    assert "Glass Jug" in email.text
    assert email.headers["content-security-policy"].startswith("default-src 'none'")


def test_unknown_customer_and_random_member(shop: Any) -> None:
    store, settings = shop
    members = {
        c.id
        for c in (store.get_customer(e) for e in ("ann@example.test", "bob@example.test", "dee@example.test"))
        if c
    }
    with preview_client(store, settings) as client:
        response = client.post(
            "/campaigns/weekly-picks/customer", data={"q": "nobody@example.test"}, follow_redirects=False
        )
        assert "error=no+customer" in response.headers["location"]
        assert "no customer" in client.get(response.headers["location"]).text
        for _ in range(3):
            response = client.post(
                "/campaigns/weekly-picks/customer", data={"random": "1"}, follow_redirects=False
            )
            picked = int(response.headers["location"].split("customer=")[1].split("&")[0])
            assert picked in members
        assert client.get("/campaigns/no-such-campaign").status_code == 404


def test_a_post_purchase_preview_uses_the_customers_latest_order(shop: Any) -> None:
    store, settings = shop
    ann = store.get_customer("ann@example.test")
    assert ann is not None
    with preview_client(store, settings) as client:
        page = client.get(f"/campaigns/thank-you-follow-up?customer={ann.id}").text
    assert 'id="subject">Thank you for your order, Ann<' in page
    assert "Linen Napkin" in page  # the text tab lists what she bought last


def test_templates_run_sandboxed(shop: Any) -> None:
    from campaigns.definition import find_campaign
    from campaigns.errors import RenderError
    from campaigns.kinds import build_context
    from campaigns.kinds.fixture import load_fixture
    from campaigns.render import CampaignRenderer

    store, settings = shop
    path = Path(settings.templates_dir) / "emails" / "weekly-picks.mjml"
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    path.write_text(path.read_text().replace("{% block content %}", "{% block content %}" + evil, 1))
    d = find_campaign(Path(settings.templates_dir), "weekly-picks")
    context = build_context(d, settings, load_fixture(d), is_preview=True)
    with pytest.raises(RenderError, match="unsafe|__class__"):
        CampaignRenderer(d, settings).render(context)
    with preview_client(store, settings) as client:
        page = client.get("/campaigns/weekly-picks").text
    assert "Cannot render." in page and "is unsafe" in page


def test_send_test_goes_through_the_sender_and_is_not_a_delivery(shop: Any) -> None:
    from campaigns.senders import memory

    store, settings = shop
    memory.clear()
    bob = store.get_customer("bob@example.test")
    assert bob is not None
    with preview_client(store, settings) as client:
        page = client.post(
            "/campaigns/weekly-picks/send-test", data={"to": "me@shop.example.test", "customer": str(bob.id)}
        ).text
        bad = client.post("/campaigns/weekly-picks/send-test", data={"to": "not an address"}).text
    assert "sent to me@shop.example.test" in page
    assert "not sent" in bad or "invalid" in bad.lower()
    [message] = memory.outbox("web")
    assert message.rcpt_to == "me@shop.example.test"
    assert b"Subject: [TEST] Bob, new picks for you" in message.data
    assert store.delivery_counts_by_campaign() == {}
    # the bad address was refused before reaching the sender: only the real attempt is logged
    assert store.event_counts("test_send") == {"weekly-picks": 1}
    [event] = store.events("test_send")
    assert event["payload"]["ok"] is True and event["customer_id"] == bob.id


def test_without_a_model_real_customers_still_render_and_fixtures_work(shop: Any) -> None:
    store, settings = shop
    ann = store.get_customer("ann@example.test")
    assert ann is not None
    with preview_client(store, settings, recommender=None) as client:
        index = client.get("/").text
        fixture = client.get("/campaigns/weekly-picks").text
        real = client.get(f"/campaigns/weekly-picks?customer={ann.id}").text
    assert "retain train" in index
    assert 'id="subject">Ada, new picks for you<' in fixture
    assert "would be skipped" in real or 'id="subject">Ann' in real


def test_live_reload_stream_announces_template_changes(shop: Any) -> None:
    import asyncio

    from campaigns.web.reload import TemplateWatcher

    async def scenario() -> list[str]:
        watcher = TemplateWatcher(Path(shop[1].templates_dir))
        await watcher.start()
        frames: list[str] = []
        stream = watcher.changes()
        frames.append(await stream.__anext__())
        await asyncio.sleep(0.3)  # let the watcher arm
        (Path(shop[1].templates_dir) / "partials" / "button.mjml").write_text(
            "<!-- edited -->\n", encoding="utf-8"
        )
        frames.append(await asyncio.wait_for(stream.__anext__(), timeout=5))
        await watcher.stop()
        return frames

    hello, reload = asyncio.run(scenario())
    assert hello.startswith("retry: 1000")
    assert reload.startswith("event: reload")


def test_dashboard_renders_every_chart(shop: Any) -> None:
    store, settings = shop
    with preview_client(store, settings) as client:
        page = client.get("/dashboard?days=14").text
        assert client.get("/dashboard?days=nonsense").status_code == 200
    for chart in ("retention", "repeat", "aov", "cohorts", "uplift"):
        assert f'data-chart="{chart}"' in page
    assert "Orders ≤ 14 d" in page
    assert ">4<" in page  # customers KPI


def test_dashboard_shows_amounts_in_their_currency(shop: Any) -> None:
    store, settings = shop
    with preview_client(store, settings) as client:
        single = client.get("/dashboard").text
    assert "£" in single and 'id="currencies"' not in single  # one currency: no per-currency table
    batch = ImportBatch(source="generic")
    batch.products["USD-1"] = ProductIn("USD-1", "Import", 7.0, "USD")
    batch.orders["usd-1"] = OrderIn(
        "usd-1", CUSTOMERS[0][0], AS_OF - timedelta(days=3), "USD", [("USD-1", 1, 7.0)]
    )
    batch.customers[CUSTOMERS[0][0]] = CustomerIn(CUSTOMERS[0][0])
    store.write_import(batch)
    with preview_client(store, settings) as client:
        mixed = client.get("/dashboard").text
    assert 'id="currencies"' in mixed and 'data-currency="USD"' in mixed and "$7.00" in mixed


def test_bind_rules_for_the_preview() -> None:
    from campaigns.errors import ConfigError
    from campaigns.web.security import check_bind

    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind(host, allow_remote=False, password="")
    with pytest.raises(ConfigError, match="--allow-remote"):
        check_bind("0.0.0.0", allow_remote=False, password="secret")
    with pytest.raises(ConfigError, match="preview_password"):
        check_bind("0.0.0.0", allow_remote=True, password="")
    check_bind("0.0.0.0", allow_remote=True, password="secret")


def test_retain_preview_refuses_a_public_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from campaigns.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["--db", f"sqlite:///{tmp_path / 'x.db'}", "preview", "--host", "0.0.0.0"]) == 1
    assert "refusing to bind" in capsys.readouterr().err


def test_password_host_and_origin_guards(shop: Any) -> None:
    import base64

    store, settings = shop
    locked = replace(settings, preview_password="s3cret")
    with preview_client(store, locked) as client:
        assert client.get("/").status_code == 401
        good = "Basic " + base64.b64encode(b"any:s3cret").decode()
        wrong = "Basic " + base64.b64encode(b"any:guess").decode()
        assert client.get("/", headers={"authorization": wrong}).status_code == 401
        assert client.get("/", headers={"authorization": good}).status_code == 200
    with preview_client(store, settings) as client:
        assert client.get("/", headers={"host": "evil.example"}).status_code == 400
        cross = client.post(
            "/campaigns/weekly-picks/send-test",
            data={"to": "a@b.test"},
            headers={"origin": "https://evil.example"},
        )
        assert cross.status_code == 403
