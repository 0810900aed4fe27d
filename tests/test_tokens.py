"""Signed tokens: round trip, forgery, wrong purpose, expiry, malformed input."""

from __future__ import annotations

import pytest

from campaigns.errors import TokenError
from campaigns.tokens import FEEDBACK, UNSUBSCRIBE, feedback_url, sign_token, unsubscribe_url, verify_token

KEY = b"test-secret"


def test_round_trip() -> None:
    token = sign_token(KEY, UNSUBSCRIBE, customer=42, campaign="weekly-picks")
    assert verify_token(KEY, token, UNSUBSCRIBE, max_age_days=1) == {
        "customer": 42,
        "campaign": "weekly-picks",
    }
    assert "@" not in token and "/" not in token and "+" not in token


def test_forged_and_wrong_purpose() -> None:
    token = sign_token(KEY, UNSUBSCRIBE, customer=42, campaign="c")
    with pytest.raises(TokenError, match="bad signature"):
        verify_token(b"other-key", token, UNSUBSCRIBE, max_age_days=1)
    with pytest.raises(TokenError):
        verify_token(KEY, token, FEEDBACK, max_age_days=1)
    payload, sig = token.split(".")
    evil = sign_token(b"attacker", UNSUBSCRIBE, customer=1, campaign="c").split(".")[0]
    with pytest.raises(TokenError):
        verify_token(KEY, f"{evil}.{sig}", UNSUBSCRIBE, max_age_days=1)


def test_expired() -> None:
    token = sign_token(KEY, FEEDBACK, issued_at=1_000_000, order=1, customer=2, campaign="c", rating=5)
    assert verify_token(KEY, token, FEEDBACK, max_age_days=2, now=1_000_000 + 86_400)["rating"] == 5
    with pytest.raises(TokenError, match="expired"):
        verify_token(KEY, token, FEEDBACK, max_age_days=2, now=1_000_000 + 3 * 86_400)


@pytest.mark.parametrize("bad", ["", "abc", "a.b.c", "!!!.???", "x" * 5000, "eyJ9.", ".abc"])
def test_malformed(bad: str) -> None:
    with pytest.raises(TokenError):
        verify_token(KEY, bad, UNSUBSCRIBE, max_age_days=1)


def test_urls_and_reserved_fields() -> None:
    url = unsubscribe_url("https://shop.example/", KEY, customer_id=7, campaign="c")
    assert url.startswith("https://shop.example/u/")
    assert verify_token(KEY, url.rsplit("/", 1)[1], UNSUBSCRIBE, 1) == {"customer": 7, "campaign": "c"}
    f = feedback_url("https://shop.example", KEY, order_id=3, customer_id=7, campaign="c", rating=4)
    fields = verify_token(KEY, f.rsplit("/", 1)[1], FEEDBACK, 1)
    assert fields == {"order": 3, "customer": 7, "campaign": "c", "rating": 4}
    with pytest.raises(TokenError, match="reserved"):
        sign_token(KEY, UNSUBSCRIBE, p="x")
    with pytest.raises(TokenError, match="empty secret"):
        sign_token(b"", UNSUBSCRIBE, customer=1)
