"""Click tracking: the links of an email rewritten to signed redirects on ``retain serve`` (``/c/<token>``).

A tracked link is ``{public_url}/c/{token}``; the token (:mod:`campaigns.tokens`, purpose ``click``)
carries the destination URL exactly as the email had it (UTM parameters included), the customer, the
campaign, the run and the variant. ``/c/`` redirects only to the URL inside a valid token, so it can never
be used as an open redirect: a forged or altered token is a 400 with no redirect::

    rewrite = LinkRewriter(secret, public_url, customer_id=42, campaign="weekly-picks", run_key="r1")
    html = rewrite.html(rendered.html)   # every http(s) href except the shop's own public links
    text = rewrite.text(rendered.text)   # the same URLs in the plain-text part (same tokens)

Not rewritten: ``mailto:``/``tel:``/anchors, the unsubscribe and feedback links (under ``public_url``),
and a URL so long that its token would pass :data:`campaigns.tokens.MAX_TOKEN_LENGTH` (it stays as it is,
untracked, rather than break).
"""

from __future__ import annotations

import base64
import html as html_lib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from campaigns.errors import TokenError
from campaigns.tokens import MAX_TOKEN_LENGTH, sign_token, verify_token

CLICK = "click"
_HREF_RE = re.compile(r"""(\bhref\s*=\s*)(["'])(https?://[^"'<>\s]+)\2""", re.I)
_TEXT_URL_RE = re.compile(r"""https?://[^\s<>"')\]]+""")


@dataclass(frozen=True, slots=True)
class ClickToken:
    """What a valid click token says: where to go, and whose click it is."""

    url: str
    customer_id: int
    campaign: str
    run_key: str
    variant: str | None
    issued_at: int


def click_token(
    secret: bytes,
    url: str,
    *,
    customer_id: int,
    campaign: str,
    run_key: str,
    variant: str | None = None,
    issued_at: float | None = None,
) -> str:
    fields: dict[str, Any] = {"u": url, "c": customer_id, "k": campaign, "r": run_key}
    if variant:
        fields["v"] = variant
    return sign_token(secret, CLICK, issued_at=issued_at, **fields)


def read_click_token(
    secret: bytes | Sequence[bytes], token: str, max_age_days: float, *, now: float | None = None
) -> ClickToken:
    """The click a token stands for; TokenError when forged, malformed, expired or another purpose's."""
    fields = verify_token(secret, token, CLICK, max_age_days, now=now)
    url, customer, campaign, run = fields.get("u"), fields.get("c"), fields.get("k"), fields.get("r")
    if (
        not isinstance(url, str)
        or not url.lower().startswith(("http://", "https://"))
        or not isinstance(customer, int)
        or not isinstance(campaign, str)
        or not isinstance(run, str)
    ):
        raise TokenError("this link is not valid (incomplete token)")
    variant = fields.get("v")
    # the issue time is checked by verify_token; read it back for the "too soon after delivery" rule
    issued = _issued_at(token)
    return ClickToken(url, customer, campaign, run, variant if isinstance(variant, str) else None, issued)


def _issued_at(token: str) -> int:
    payload = token.split(".", 1)[0]
    body = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return int(body["t"])


@dataclass
class LinkRewriter:
    """Rewrites one email's links (HTML and text share one token per distinct URL)."""

    secret: bytes
    public_url: str
    customer_id: int
    campaign: str
    run_key: str
    variant: str | None = None
    issued_at: float | None = None
    _done: dict[str, str] = field(default_factory=dict)

    def tracked(self, url: str) -> str:
        """The redirect link for ``url`` (``url`` itself when it must not or cannot be tracked)."""
        known = self._done.get(url)
        if known is not None:
            return known
        base = self.public_url.rstrip("/")
        if url.startswith(base + "/"):
            out = url  # unsubscribe / feedback: the shop's own signed links
        else:
            token = click_token(
                self.secret,
                url,
                customer_id=self.customer_id,
                campaign=self.campaign,
                run_key=self.run_key,
                variant=self.variant,
                issued_at=self.issued_at,
            )
            out = f"{base}/c/{token}" if len(token) <= MAX_TOKEN_LENGTH else url
        self._done[url] = out
        return out

    def html(self, markup: str) -> str:
        def swap(m: re.Match[str]) -> str:
            url = html_lib.unescape(m.group(3))
            return f"{m.group(1)}{m.group(2)}{html_lib.escape(self.tracked(url))}{m.group(2)}"

        return _HREF_RE.sub(swap, markup)

    def text(self, plain: str) -> str:
        def swap(m: re.Match[str]) -> str:
            url = m.group(0)
            trail = ""
            while url and url[-1] in ".,;:!?":  # sentence punctuation after a URL is not part of it
                trail = url[-1] + trail
                url = url[:-1]
            return self.tracked(url) + trail

        return _TEXT_URL_RE.sub(swap, plain)


__all__ = ["CLICK", "ClickToken", "LinkRewriter", "click_token", "read_click_token"]
