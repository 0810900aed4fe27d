"""Public endpoints over HTTP: one-click unsubscribe and feedback tokens (forged, expired, replayed,
wrong purpose or campaign), and ``retain feedback --below``."""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaigns.config import Settings
from campaigns.store import Store
from campaigns.tokens import FEEDBACK, UNSUBSCRIBE, feedback_url, sign_token, unsubscribe_url
from campaigns.web.public import create_public_app
from tests.test_web import make_shop

with warnings.catch_warnings():  # starlette 1.x asks for httpx2; httpx works the same here
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

KEY = b"web-test-secret"


@pytest.fixture
def public(tmp_path: Path) -> Iterator[tuple[TestClient, Store, Settings]]:
    store, settings = make_shop(tmp_path)
    with TestClient(create_public_app(store, settings), base_url="https://shop.example.test") as client:
        yield client, store, settings
    store.close()


def _ann(store: Store) -> Any:
    customer = store.get_customer("ann@example.test")
    assert customer is not None
    return customer


def _path(url: str) -> str:
    return url.removeprefix("https://shop.example.test/r")


def test_get_shows_a_confirm_page_and_changes_nothing(public: Any) -> None:
    client, store, settings = public
    ann = _ann(store)
    url = _path(unsubscribe_url(settings.public_url, KEY, customer_id=ann.id, campaign="weekly-picks"))
    response = client.get(url)
    assert response.status_code == 200
    assert "Unsubscribe from our emails?" in response.text and 'name="List-Unsubscribe"' in response.text
    assert not store.is_suppressed(ann.email)
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["cache-control"] == "no-store"


def test_one_click_post_unsubscribes_at_once_and_replays_are_harmless(public: Any) -> None:
    client, store, settings = public
    ann = _ann(store)
    url = _path(unsubscribe_url(settings.public_url, KEY, customer_id=ann.id, campaign="weekly-picks"))
    for _ in range(3):
        response = client.post(url, data={"List-Unsubscribe": "One-Click"}, follow_redirects=False)
        assert response.status_code == 200  # RFC 8058: no redirect, nothing more to do
        assert response.text == "You are unsubscribed."
    assert store.is_suppressed("ANN@example.test")
    assert store.suppression_counts() == {"unsubscribed": 1}
    [event] = store.events("unsubscribe")
    assert (event["customer_id"], event["campaign"]) == (ann.id, "weekly-picks")
    bob = store.get_customer("bob@example.test")
    assert bob is not None and not store.is_suppressed(bob.email or "")


def test_the_confirm_button_unsubscribes_and_says_so(public: Any) -> None:
    client, store, settings = public
    ann = _ann(store)
    url = _path(unsubscribe_url(settings.public_url, KEY, customer_id=ann.id, campaign="weekly-picks"))
    response = client.post(url, data={"List-Unsubscribe": "One-Click", "from": "page"})
    assert response.status_code == 200 and "You are unsubscribed" in response.text
    assert store.is_suppressed(ann.email)


def _tamper(token: str, **changes: Any) -> str:
    import base64

    payload, signature = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    body.update(changes)
    raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode() + "." + signature


@pytest.mark.parametrize(
    "case", ["forged-signature", "other-customer", "other-campaign", "garbage", "feedback-token"]
)
def test_bad_unsubscribe_tokens_are_refused_and_suppress_nobody(public: Any, case: str) -> None:
    client, store, _ = public
    ann = _ann(store)
    good = sign_token(KEY, UNSUBSCRIBE, customer=ann.id, campaign="weekly-picks")
    token = {
        "forged-signature": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        "other-customer": _tamper(good, customer=ann.id + 1),
        "other-campaign": _tamper(good, campaign="we-miss-you"),
        "garbage": "not-a-token",
        "feedback-token": sign_token(
            KEY, FEEDBACK, order=1, customer=ann.id, campaign="weekly-picks", rating=5
        ),
    }[case]
    for method in ("GET", "POST"):
        response = client.request(
            method, f"/u/{token}", data={"List-Unsubscribe": "One-Click"} if method == "POST" else None
        )
        assert response.status_code == 400
        assert "This link does not work" in response.text
    assert store.suppression_counts() == {}
    assert store.events("unsubscribe") == []


def test_a_token_signed_with_another_key_is_refused(public: Any) -> None:
    client, store, _ = public
    token = sign_token(b"another-shop", UNSUBSCRIBE, customer=_ann(store).id, campaign="weekly-picks")
    assert client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert store.suppression_counts() == {}


def test_an_expired_token_is_refused(public: Any) -> None:
    client, store, settings = public
    old = time.time() - (settings.token_max_age_days + 1) * 86_400
    token = sign_token(KEY, UNSUBSCRIBE, issued_at=old, customer=_ann(store).id, campaign="weekly-picks")
    response = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 400 and "expired" in response.text
    assert store.suppression_counts() == {}


def test_unknown_customer_answers_like_a_real_one(public: Any) -> None:
    client, store, _ = public
    token = sign_token(KEY, UNSUBSCRIBE, customer=999_999, campaign="weekly-picks")
    response = client.post(f"/u/{token}", data={"List-Unsubscribe": "One-Click"})
    assert (response.status_code, response.text) == (200, "You are unsubscribed.")
    assert store.suppression_counts() == {}


def test_public_app_serves_nothing_else(public: Any) -> None:
    client, _, _ = public
    for path in ("/", "/dashboard", "/campaigns/weekly-picks", "/u/", "/events"):
        assert client.get(path).status_code == 404


def _ann_order(store: Store) -> Any:
    ann = _ann(store)
    return store.orders_for_customers([ann.id])[ann.id][0]


def test_a_star_link_shows_the_rating_and_only_the_send_button_records_it(public: Any) -> None:
    client, store, settings = public
    order = _ann_order(store)
    stars = {
        r: _path(
            feedback_url(
                settings.public_url,
                KEY,
                order_id=order.id,
                customer_id=order.customer_id,
                campaign="thank-you-follow-up",
                rating=r,
            )
        )
        for r in (2, 4)
    }
    response = client.get(stars[2])  # a mail scanner does the same: nothing may be recorded
    assert response.status_code == 200 and "How did we do?" in response.text
    assert 'value="2" checked' in response.text and 'aria-label="2 out of 5 stars"' in response.text
    assert store.feedback_for(order.id, "thank-you-follow-up") is None
    assert store.events("feedback") == []

    response = client.post(stars[2], data={"rating": "2"})
    assert response.status_code == 200 and "Thank you for your rating" in response.text
    assert "<textarea" in response.text and "Change my rating" in response.text
    saved = store.feedback_for(order.id, "thank-you-follow-up")
    assert saved is not None and (saved.rating, saved.comment) == (2, None)

    response = client.post(stars[2], data={"rating": "2", "comment": "  The cup arrived chipped.  "})
    assert response.status_code == 200 and "Thank you for your comment" in response.text
    client.post(stars[2], data={"rating": "2"})  # a replayed star keeps the comment
    saved = store.feedback_for(order.id, "thank-you-follow-up")
    assert saved is not None and (saved.rating, saved.comment) == (2, "The cup arrived chipped.")

    client.post(stars[4])  # changing one's mind (another star, no form field) rewrites the same row
    saved = store.feedback_for(order.id, "thank-you-follow-up")
    assert saved is not None and saved.rating == 4
    client.post(stars[4], data={"rating": "3"})  # the page's own correction: the last one wins
    saved = store.feedback_for(order.id, "thank-you-follow-up")
    assert saved is not None and saved.rating == 3
    client.post(stars[4], data={"rating": "9"})  # out of range: the link's own rating
    saved = store.feedback_for(order.id, "thank-you-follow-up")
    assert saved is not None and saved.rating == 4
    assert len(store.events("feedback")) == 2  # first rating + the comment


def test_feedback_for_someone_elses_order_is_refused(public: Any) -> None:
    client, store, _ = public
    order = _ann_order(store)
    bob = store.get_customer("bob@example.test")
    assert bob is not None
    token = sign_token(
        KEY, FEEDBACK, order=order.id, customer=bob.id, campaign="thank-you-follow-up", rating=1
    )
    assert client.get(f"/f/{token}").status_code == 404
    assert client.post(f"/f/{token}").status_code == 404
    unsub = sign_token(KEY, UNSUBSCRIBE, customer=bob.id, campaign="thank-you-follow-up")
    assert client.get(f"/f/{unsub}").status_code == 400
    bad_rating = sign_token(KEY, FEEDBACK, order=order.id, customer=order.customer_id, campaign="x", rating=9)
    assert client.get(f"/f/{bad_rating}").status_code == 400
    assert client.post(f"/f/{bad_rating}").status_code == 400
    assert store.feedback_for(order.id, "thank-you-follow-up") is None


def test_retain_feedback_below_lists_low_ratings(
    public: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from campaigns.cli import main

    client, store, settings = public
    ann = _ann(store)
    orders = store.orders_for_customers([ann.id])[ann.id]
    store.record_feedback(
        order_id=orders[0].id, customer_id=ann.id, campaign="thank-you-follow-up", rating=1, comment="late"
    )
    store.record_feedback(order_id=orders[1].id, customer_id=ann.id, campaign="thank-you-follow-up", rating=3)
    store.record_feedback(order_id=orders[2].id, customer_id=ann.id, campaign="thank-you-follow-up", rating=5)
    monkeypatch.chdir(tmp_path)  # away from the repository's retain.toml
    assert main(["--db", settings.database_url, "feedback", "--below", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["rating"], r["comment"], r["email"]) for r in rows] == [(1, "late", "ann@example.test")]
    assert main(["--db", settings.database_url, "feedback", "--below", "4"]) == 0
    assert "late" in capsys.readouterr().out
    assert main(["--db", settings.database_url, "feedback", "--below", "0"]) == 1
