"""The public endpoints, meant to sit behind the shop's domain: unsubscribe and feedback.

Routes (nothing else is served; any other path is a plain 404)::

    GET  /u/<token>   a small confirm page with one button (changes nothing)
    POST /u/<token>   unsubscribe now. RFC 8058: a mail client's one-click POST carries the body
                      ``List-Unsubscribe=One-Click`` and gets a 200, no redirect, no further step
    GET  /c/<token>   a tracked link: records the click, 302 to the signed URL (campaigns/web/clicks.py);
                      HEAD answers the same and records nothing (a click is a measurement, not a change)
    GET  /f/<token>   a star link of a follow-up email: a page with the tapped rating chosen, a
                      comment box and one "Send" button (changes nothing)
    POST /f/<token>   records the rating (the form's, 1-5, default the tapped one) and the optional
                      comment; the last one wins, and the thank-you page lets the customer change it

Only POST changes the customer's state; a GET on /c/ records a click (a measurement). HEAD is answered
like GET (the same page, no body) and records nothing;
OPTIONS and every other method get a 405. Mail security scanners fetch (GET/HEAD) every link of a
message: a GET that unsubscribed or rated would unsubscribe whole lists and invent ratings. So a star
link costs the customer one more tap, and in return ``retain feedback --below`` lists only ratings a
person gave (docs/security.md).

Tokens are HMAC-signed by :mod:`campaigns.tokens` (customer + campaign [+ order + rating]); a forged,
malformed, expired or wrong-purpose token gets a 400 page that reveals nothing. A token signed as a
*test* token (the preview's "send test" and pages, :func:`campaigns.tokens.sign_as_test`) gets a
"this was a test" page on every method and never acts. Replays are harmless: suppressing an address
twice keeps the first row, and a rating replay rewrites the same value. URLs carry only the token;
pages show no customer data beyond "you are unsubscribed".

Mount it under a prefix of the shop's site, or run it with ``retain serve`` behind a reverse proxy.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from campaigns.config import Settings
from campaigns.errors import TokenError
from campaigns.tokens import FEEDBACK, TEST_FIELD, UNSUBSCRIBE, verify_token
from campaigns.web.clicks import ClickEndpoint
from campaigns.web.pages import render_page
from campaigns.web.security import SecurityHeaders

#: longest feedback comment kept (characters)
MAX_COMMENT = 2_000
PUBLIC_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"


class PublicEndpoints:
    """The request handlers; ``store`` is a :class:`campaigns.store.Store`."""

    def __init__(self, store: Any, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        from campaigns.keys import LiveKeys

        self.secret = LiveKeys(settings)  # the current key and rotated ones still kept, re-read on rotation

    def _verify(self, token: str, purpose: str) -> dict[str, Any]:
        fields = verify_token(self.secret, token, purpose, self.settings.token_max_age_days)
        ids = ("customer",) if purpose == UNSUBSCRIBE else ("order", "customer", "rating")
        campaign = fields.get("campaign")
        ok = (
            all(_is_id(fields.get(k)) for k in ids) and isinstance(campaign, str) and 0 < len(campaign) <= 200
        )
        if not ok or (purpose == FEEDBACK and not 1 <= fields["rating"] <= 5):
            raise TokenError("this link is not valid (incomplete token)")
        return fields

    def _bad_link(self, exc: TokenError) -> Response:
        return render_page("public_error.html", status_code=400, shop=self._shop(), message=str(exc))

    def _shop(self) -> dict[str, str]:
        return {"name": self.settings.shop_name, "url": self.settings.shop_url}

    # ------------------------------------------------------------------ unsubscribe

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            fields = self._verify(token, UNSUBSCRIBE)
        except TokenError as exc:
            return self._bad_link(exc)
        if fields.get(TEST_FIELD):
            return await self._test_link(request, "unsubscribe")
        if request.method != "POST":  # GET and HEAD: the confirm page, nothing else
            return render_page(
                "public_unsubscribe.html", shop=self._shop(), done=False, action=request.url.path
            )
        await run_in_threadpool(self._unsubscribe, fields["customer"], str(fields["campaign"]))
        try:
            form = dict(await request.form())
        except Exception:  # noqa: BLE001 - a garbled body still unsubscribes; answer briefly
            form = {}
        if form.get("from") != "page":
            # RFC 8058: the mail client posted; a short 200 is all it needs
            return PlainTextResponse("You are unsubscribed.")
        return render_page("public_unsubscribe.html", shop=self._shop(), done=True, action=request.url.path)

    async def _test_link(self, request: Request, what: str) -> Response:
        """A link from a test email: says so, and acts on nothing (whatever the method)."""
        if request.method == "POST":
            try:
                form = dict(await request.form())
            except Exception:  # noqa: BLE001 - the body does not matter here
                form = {}
            if what == "unsubscribe" and form.get("from") != "page":
                return PlainTextResponse("This was a test email: nothing was changed.")
        return render_page("public_test.html", shop=self._shop(), what=what)

    def _unsubscribe(self, customer_id: int, campaign: str) -> None:
        customer = self.store.customers_by_ids([customer_id]).get(customer_id)
        if customer is None or not customer.email:
            return  # nothing to suppress; answer the same way so ids cannot be probed
        if self.store.suppress(customer.email, "unsubscribed", customer_id=customer_id, campaign=campaign):
            self.store.record_event("unsubscribe", customer_id=customer_id, campaign=campaign)

    # ------------------------------------------------------------------ feedback

    async def feedback(self, request: Request) -> Response:
        token = request.path_params["token"]
        try:
            fields = self._verify(token, FEEDBACK)
        except TokenError as exc:
            return self._bad_link(exc)
        if fields.get(TEST_FIELD):
            return await self._test_link(request, "feedback")
        rating: int = fields["rating"]
        comment: str | None = None
        if request.method == "POST":
            try:
                form: Any = await request.form()
            except Exception:  # noqa: BLE001 - a garbled body is treated as the tapped rating, no comment
                form = {}
            raw = form.get("comment")
            comment = (raw if isinstance(raw, str) else "").strip()[:MAX_COMMENT] or None
            chosen = form.get("rating")
            if isinstance(chosen, str) and chosen.strip() in ("1", "2", "3", "4", "5"):
                rating = int(chosen)
            found = await run_in_threadpool(self._record, dict(fields, rating=rating), comment)
        else:  # GET and HEAD: show the tapped rating with a Send button; record nothing
            found = await run_in_threadpool(self._order_matches, fields)
        if not found:
            return render_page(
                "public_error.html",
                status_code=404,
                shop=self._shop(),
                message="We could not find the order this link is for.",
            )
        return render_page(
            "public_feedback.html",
            shop=self._shop(),
            rating=rating,
            action=request.url.path,
            recorded=request.method == "POST",
            commented=comment is not None,
        )

    def _order_matches(self, fields: dict[str, Any]) -> bool:
        order = self.store.get_order(fields["order"])
        return order is not None and order.customer_id == fields["customer"]

    def _record(self, fields: dict[str, Any], comment: str | None) -> bool:
        order = self.store.get_order(fields["order"])
        if order is None or order.customer_id != fields["customer"]:
            return False
        campaign = str(fields["campaign"])
        first = self.store.record_feedback(
            order_id=order.id,
            customer_id=order.customer_id,
            campaign=campaign,
            rating=fields["rating"],
            comment=comment,
        )
        if first or comment is not None:
            self.store.record_event(
                "feedback",
                customer_id=order.customer_id,
                campaign=campaign,
                payload={"order": order.id, "rating": fields["rating"], "comment": comment is not None},
            )
        return True


def _is_id(value: Any) -> bool:
    """A database id as a token may carry it: a positive int a 64-bit column can hold."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63


async def _not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("Not found", status_code=404)


def create_public_app(store: Any, settings: Settings) -> Any:
    """The public ASGI app (unsubscribe + feedback only), with security headers on every response."""
    endpoints = PublicEndpoints(store, settings)
    clicks = ClickEndpoint(store, settings)
    app = Starlette(
        routes=[
            Route("/u/{token}", endpoints.unsubscribe, methods=["GET", "HEAD", "POST"]),
            Route("/f/{token}", endpoints.feedback, methods=["GET", "HEAD", "POST"]),
            # tracked links (campaigns/web/clicks.py): GET records the click, HEAD records nothing
            Route("/c/{token}", clicks.redirect, methods=["GET", "HEAD"]),
        ],
        exception_handlers={404: _not_found},
    )
    app.state.endpoints = endpoints
    app.state.clicks = clicks
    return SecurityHeaders(app, PUBLIC_CSP)
