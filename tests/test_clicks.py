"""Click tracking: links rewritten by the factory on real sends, the signed ``/c/`` redirect (no open
redirect, tampered tokens refused), clicks stored with time, and scanner traffic flagged — through the real
public app (Starlette TestClient), on SQLite and PostgreSQL for the store's rules."""

from __future__ import annotations

import email
import re
import warnings
from datetime import UTC, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from campaigns.clicks import BURST, SCANNER_UA, TOO_SOON, scanner_agent
from campaigns.definition import find_campaign
from campaigns.errors import TokenError
from campaigns.runner import run_campaign
from campaigns.senders import memory
from campaigns.store import Store
from campaigns.tokens import sign_token, unsubscribe_url
from campaigns.tracking import LinkRewriter, click_token, read_click_token
from campaigns.web.public import create_public_app
from tests.test_web import StubRecommender, make_shop

with warnings.catch_warnings():  # starlette 1.x asks for httpx2; httpx works the same here
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

KEY = b"web-test-secret"
BROWSER = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15"
PUBLIC = "https://shop.example.test/r"


class Clock:
    """The endpoint's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


# ---------------------------------------------------------------------------- rewriting


def test_rewriter_tracks_shop_links_in_html_and_text_and_leaves_the_rest() -> None:
    rw = LinkRewriter(KEY, PUBLIC, customer_id=7, campaign="weekly-picks", run_key="r1", variant="b")
    unsub = unsubscribe_url(PUBLIC, KEY, customer_id=7, campaign="weekly-picks")
    product = "https://shop.example.test/p/SKU1?utm_source=retain&utm_medium=email&utm_campaign=weekly-picks"
    html = (
        f'<a href="{product.replace("&", "&amp;")}">Cup</a> <a href="mailto:hi@shop.example.test">mail</a>'
        f' <a href="{unsub}">unsubscribe</a> <a href="#top">top</a>'
    )
    text = f"Cup ({product}). Unsubscribe: {unsub}"
    out_html, out_text = rw.html(html), rw.text(text)
    [tracked] = re.findall(r'href="(https://shop\.example\.test/r/c/[^"]+)"', out_html)
    assert 'href="mailto:hi@shop.example.test"' in out_html and f'href="{unsub}"' in out_html
    assert 'href="#top"' in out_html
    # the text part carries the same token, and the sentence's full stop stays outside the URL
    assert f"Cup ({tracked})." in out_text and out_text.endswith(unsub)
    click = read_click_token(KEY, tracked.rsplit("/", 1)[1], 365)
    assert click.url == product  # the destination, UTM kept, unescaped
    assert (click.customer_id, click.campaign, click.run_key, click.variant) == (7, "weekly-picks", "r1", "b")


def test_a_url_too_long_for_a_token_stays_untracked() -> None:
    rw = LinkRewriter(KEY, PUBLIC, customer_id=1, campaign="c", run_key="r")
    url = "https://shop.example.test/p?" + "x" * 3000
    assert rw.tracked(url) == url


def test_tampered_foreign_and_other_purpose_tokens_are_refused() -> None:
    token = click_token(KEY, "https://shop.example.test/", customer_id=1, campaign="c", run_key="r")
    payload, sig = token.split(".")
    with pytest.raises(TokenError):
        read_click_token(b"another-shop", token, 365)
    with pytest.raises(TokenError):
        read_click_token(KEY, payload[:-2] + "AA." + sig, 365)
    with pytest.raises(TokenError):  # an unsubscribe token is no redirect
        read_click_token(KEY, sign_token(KEY, "unsubscribe", customer=1, campaign="c"), 365)
    with pytest.raises(TokenError):  # a signed click without a web URL (javascript:, data:) is refused
        read_click_token(
            KEY, click_token(KEY, "javascript:alert(1)", customer_id=1, campaign="c", run_key="r"), 365
        )


@pytest.mark.parametrize(
    ("agent", "scanner"),
    [
        (BROWSER, False),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36", False),
        ("", True),
        (None, True),
        ("Mozilla/5.0 (compatible; Barracuda Sentinel)", True),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120",
            True,
        ),
        ("python-requests/2.32", True),
        ("Microsoft Office Existence Discovery", True),
    ],
)
def test_scanner_user_agents(agent: str | None, scanner: bool) -> None:
    assert scanner_agent(agent) is scanner


# ---------------------------------------------------------------------------- store rules (both databases)


def test_store_flags_too_soon_and_bursts_and_keeps_human_clicks(store: Store) -> None:
    t0 = datetime(2024, 3, 1, 10, 0)
    common: dict[str, Any] = {"campaign": "c", "run_key": "r", "customer_id": 1, "variant": None}
    assert store.record_click(**common, url="https://a/1", user_agent=BROWSER, clicked_at=t0) is None
    # a second link a minute later: still human
    assert (
        store.record_click(
            **common, url="https://a/2", user_agent=BROWSER, clicked_at=t0 + timedelta(minutes=1)
        )
        is None
    )
    # then three different links inside five seconds: all three are the scanner's
    t1 = t0 + timedelta(hours=1)
    for i, url in enumerate(("https://a/1", "https://a/2", "https://a/3")):
        store.record_click(**common, url=url, user_agent=BROWSER, clicked_at=t1 + timedelta(seconds=i))
    assert store.record_click(**common, url="https://a/9", user_agent="curl/8.5", clicked_at=t0) == SCANNER_UA
    reasons = [c.reason for c in store.clicks("c")]
    assert reasons == [None, SCANNER_UA, None, BURST, BURST, BURST]
    # another customer's clicks never make a burst with these
    assert (
        store.record_click(
            **{**common, "customer_id": 2}, url="https://a/4", user_agent=BROWSER, clicked_at=t1
        )
        is None
    )


# ---------------------------------------------------------------------------- end to end through /c/


@pytest.fixture
def sent_shop(tmp_path: Path) -> Any:
    store, settings = make_shop(tmp_path)
    memory.clear()
    definition = find_campaign(Path(settings.templates_dir), "weekly-picks")
    now = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
    summary = run_campaign(
        store,
        settings,
        definition,
        recommender=StubRecommender(store),
        run_key="r1",
        now=now,
        sender="memory://",
    )
    assert summary.sent >= 1
    yield store, settings, list(memory.outbox())
    store.close()


def _parts(data: bytes) -> tuple[str, str]:
    msg = email.message_from_bytes(data)
    html = text = ""
    for part in msg.walk():
        body: Message = part
        payload = body.get_payload(decode=True)
        if isinstance(payload, bytes):
            if part.get_content_type() == "text/html":
                html = payload.decode()
            elif part.get_content_type() == "text/plain":
                text = payload.decode()
    return html, text


def test_sent_emails_carry_tracked_links_and_a_click_redirects_to_the_signed_url(sent_shop: Any) -> None:
    store, settings, outbox = sent_shop
    message = outbox[0]
    html, text = _parts(message.data)
    tracked = re.findall(r'href="(https://shop\.example\.test/r/c/[^"]+)"', html)
    assert tracked, "no tracked link in the HTML part"
    assert not re.search(r'href="https://shop\.example\.test/p/', html)  # every product link is tracked
    assert all(link in text for link in set(tracked) if link in text) and "/r/c/" in text
    customer = store.get_customer(message.rcpt_to)
    assert customer is not None
    delivered = store.delivered_at("weekly-picks", "r1", customer.id)
    assert delivered is not None
    clock = Clock((delivered + timedelta(minutes=30)).replace(tzinfo=UTC))
    app = create_public_app(store, settings)
    app.app.state.clicks.clock = clock  # the /c/ route's clock
    path = urlsplit(tracked[0]).path.removeprefix("/r")
    with TestClient(app, base_url="https://shop.example.test") as client:
        head = client.head(path, follow_redirects=False)
        assert head.status_code == 302 and store.clicks("weekly-picks") == []  # HEAD never records
        response = client.get(path, headers={"User-Agent": BROWSER}, follow_redirects=False)
        assert response.status_code == 302
        location = response.headers["location"]
        assert urlsplit(location).netloc in {"shop.example.com", "shop.example.test"}  # the shop, not us
        assert parse_qs(urlsplit(location).query)["utm_campaign"] == ["weekly-picks"]  # UTM kept
        assert location == read_click_token(KEY, path.rsplit("/", 1)[1], 365).url
        # a query string cannot steer the redirect anywhere else
        steered = client.get(
            path + "?url=https://evil.example/", headers={"User-Agent": BROWSER}, follow_redirects=False
        )
        assert steered.headers["location"] == location
        # tampered: 400, no Location, nothing stored
        before = len(store.clicks("weekly-picks"))
        bad = client.get(path[:-3] + "xyz", headers={"User-Agent": BROWSER}, follow_redirects=False)
        assert bad.status_code == 400 and "location" not in bad.headers
        assert len(store.clicks("weekly-picks")) == before
        # a scanner's click is stored but not human
        client.get(path, headers={"User-Agent": "Mozilla/5.0 (compatible; Mimecast)"}, follow_redirects=False)
    clicks = store.clicks("weekly-picks")
    assert [(c.customer_id, c.reason) for c in clicks] == [
        (customer.id, None),
        (customer.id, None),
        (customer.id, SCANNER_UA),
    ]
    assert clicks[0].clicked_at == clock.now.replace(tzinfo=None)


def test_a_click_seconds_after_delivery_is_not_human(sent_shop: Any) -> None:
    store, settings, outbox = sent_shop
    html, _ = _parts(outbox[0].data)
    link = re.findall(r'href="(https://shop\.example\.test/r/c/[^"]+)"', html)[0]
    customer = store.get_customer(outbox[0].rcpt_to)
    delivered = store.delivered_at("weekly-picks", "r1", customer.id)
    app = create_public_app(store, settings)
    app.app.state.clicks.clock = Clock((delivered + timedelta(seconds=2)).replace(tzinfo=UTC))
    with TestClient(app, base_url="https://shop.example.test") as client:
        client.get(
            urlsplit(link).path.removeprefix("/r"), headers={"User-Agent": BROWSER}, follow_redirects=False
        )
    assert [c.reason for c in store.clicks("weekly-picks")] == [TOO_SOON]


def test_track_clicks_false_leaves_links_alone(tmp_path: Path) -> None:
    store, settings = make_shop(tmp_path)
    memory.clear()
    path = Path(settings.templates_dir) / "emails" / "weekly-picks.mjml"
    path.write_text(
        path.read_text().replace("segment: active-buyers", "segment: active-buyers\ntrack_clicks: false")
    )
    definition = find_campaign(Path(settings.templates_dir), "weekly-picks")
    assert definition.track_clicks is False
    run_campaign(
        store, settings, definition, recommender=StubRecommender(store), run_key="r1", sender="memory://"
    )
    html, text = _parts(memory.outbox()[0].data)
    assert "/r/c/" not in html and "/r/c/" not in text
    assert re.search(r'href="https://shop\.example\.test/p/SKU\d\?utm_source=retain', html)
    store.close()
