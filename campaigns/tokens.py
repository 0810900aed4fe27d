"""HMAC-signed tokens for the public links in emails: one-click unsubscribe and feedback stars.

A token is ``<payload>.<signature>``, both base64url without padding. The payload is compact JSON
of the caller's fields plus ``p`` (purpose) and ``t`` (issue time, Unix seconds); the signature is
HMAC-SHA256 over ``purpose + "." + payload`` with the shop's secret key, so a token for one purpose
never verifies for another. Tokens carry ids, never an email address::

    token = sign_token(key, "unsubscribe", customer=42, campaign="weekly-picks")
    verify_token(key, token, "unsubscribe", max_age_days=365)   # -> {"customer": 42, "campaign": "weekly-picks"}

Test tokens: every token signed inside ``with sign_as_test():`` (the preview's pages and its "send test")
carries ``test: true``; the public endpoints answer such a link with "this was a test" and act on
nothing, so clicking unsubscribe in a test email never unsubscribes the previewed customer.

URLs: ``f"{settings.public_url}/u/{token}"`` (unsubscribe) and ``f"{settings.public_url}/f/{token}"``
(feedback). Field names: unsubscribe ``customer, campaign``; feedback ``order, customer, campaign, rating``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from campaigns.errors import TokenError

UNSUBSCRIBE = "unsubscribe"
FEEDBACK = "feedback"
#: the field a test token carries (``True``); reserved, set only by :func:`sign_as_test`
TEST_FIELD = "test"
_RESERVED = {"p", "t"}
_signing_tests: ContextVar[bool] = ContextVar("retain_test_tokens", default=False)


@contextmanager
def sign_as_test() -> Iterator[None]:
    """Every token signed inside this block (in this thread / task) is a test token."""
    reset = _signing_tests.set(True)
    try:
        yield
    finally:
        _signing_tests.reset(reset)


#: a token longer than this is refused before any decoding work
MAX_TOKEN_LENGTH = 2_048


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: str, payload: str) -> bytes:
    return hmac.new(secret, f"{purpose}.{payload}".encode(), hashlib.sha256).digest()


def sign_token(secret: bytes, purpose: str, *, issued_at: float | None = None, **fields: Any) -> str:
    """A URL-safe signed token carrying ``fields`` (JSON-serialisable scalars) for ``purpose``."""
    if not secret:
        raise TokenError("cannot sign a token with an empty secret key")
    clash = (_RESERVED | {TEST_FIELD}) & fields.keys()
    if clash:
        raise TokenError(f"token fields {sorted(clash)} are reserved")
    body = dict(fields, p=purpose, t=int(time.time() if issued_at is None else issued_at))
    if _signing_tests.get():
        body[TEST_FIELD] = True
    payload = _b64(json.dumps(body, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode())
    return f"{payload}.{_b64(_mac(secret, purpose, payload))}"


def verify_token(
    secret: bytes | Sequence[bytes],
    token: str,
    purpose: str,
    max_age_days: float,
    *,
    now: float | None = None,
) -> dict[str, Any]:
    """The fields of a valid token; TokenError when forged, malformed, expired or for another purpose.

    ``secret`` may be every live key (``Settings.verification_keys()``: the current one and those kept
    after ``retain secret rotate``): a token signed with any of them verifies. An empty key never does.
    """
    keys = [secret] if isinstance(secret, bytes) else list(secret)
    if not isinstance(token, str) or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise TokenError("this link is not valid (malformed token)")
    payload, signature = token.split(".")
    try:
        given = _unb64(signature)
    except (binascii.Error, ValueError):
        raise TokenError("this link is not valid (malformed token)") from None
    if not any(key and hmac.compare_digest(given, _mac(key, purpose, payload)) for key in keys):
        raise TokenError("this link is not valid (bad signature or wrong purpose)")
    try:
        body = json.loads(_unb64(payload))
    except (binascii.Error, ValueError):
        raise TokenError("this link is not valid (malformed token)") from None
    if not isinstance(body, dict) or body.get("p") != purpose or not isinstance(body.get("t"), int):
        raise TokenError("this link is not valid (wrong purpose)")
    age = (time.time() if now is None else now) - body["t"]
    if age > max_age_days * 86_400:
        raise TokenError(f"this link has expired (older than {max_age_days:g} days)")
    return {k: v for k, v in body.items() if k not in _RESERVED}


def unsubscribe_url(
    public_url: str, secret: bytes, *, customer_id: int, campaign: str, issued_at: float | None = None
) -> str:
    """The one-click unsubscribe link (also used in the List-Unsubscribe header)."""
    token = sign_token(secret, UNSUBSCRIBE, issued_at=issued_at, customer=customer_id, campaign=campaign)
    return f"{public_url.rstrip('/')}/u/{token}"


def feedback_url(
    public_url: str,
    secret: bytes,
    *,
    order_id: int,
    customer_id: int,
    campaign: str,
    rating: int,
    issued_at: float | None = None,
) -> str:
    """One star of the feedback request: a signed link that records ``rating`` for ``order_id``."""
    token = sign_token(
        secret,
        FEEDBACK,
        issued_at=issued_at,
        order=order_id,
        customer=customer_id,
        campaign=campaign,
        rating=rating,
    )
    return f"{public_url.rstrip('/')}/f/{token}"
