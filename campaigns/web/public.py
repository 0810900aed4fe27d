"""The public endpoints, meant to sit behind the shop's domain: unsubscribe and feedback.

Routes (nothing else is served; any other path is a plain 404)::

    GET  /u/<token>   a small confirm page with one button
    POST /u/<token>   unsubscribe now. RFC 8058: a mail client's one-click POST carries the body
                      ``List-Unsubscribe=One-Click`` and gets a 200, no redirect, no further step
    GET  /f/<token>   a star link of a follow-up email: records the rating for that order, thanks
    POST /f/<token>   the optional comment box on the thank-you page

Tokens are HMAC-signed by :mod:`campaigns.tokens` (customer + campaign [+ order + rating]); a forged,
malformed, expired or wrong-purpose token gets a 400 page that reveals nothing. Replays are harmless:
suppressing an address twice keeps the first row, and a rating replay rewrites the same value. URLs
carry only the token; pages show no customer data beyond "you are unsubscribed".

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
from campaigns.tokens import FEEDBACK, UNSUBSCRIBE, verify_token
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
        if purpose == UNSUBSCRIBE and not (
            isinstance(fields.get("customer"), int) and fields.get("campaign")
        ):
            raise TokenError("this link is not valid (incomplete token)")
        if purpose == FEEDBACK:
            ok = all(isinstance(fields.get(k), int) for k in ("order", "customer", "rating"))
            if not ok or not fields.get("campaign") or not 1 <= fields["rating"] <= 5:
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
        if request.method == "GET":
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
        comment: str | None = None
        if request.method == "POST":
            try:
                raw = (await request.form()).get("comment")
            except Exception:  # noqa: BLE001 - a garbled body is treated as no comment
                raw = None
            comment = (raw if isinstance(raw, str) else "").strip()[:MAX_COMMENT] or None
        saved = await run_in_threadpool(self._record, fields, comment)
        if not saved:
            return render_page(
                "public_error.html",
                status_code=404,
                shop=self._shop(),
                message="We could not find the order this link is for.",
            )
        return render_page(
            "public_feedback.html",
            shop=self._shop(),
            rating=fields["rating"],
            action=request.url.path,
            commented=comment is not None,
        )

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


async def _not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("Not found", status_code=404)


def create_public_app(store: Any, settings: Settings) -> Any:
    """The public ASGI app (unsubscribe + feedback only), with security headers on every response."""
    endpoints = PublicEndpoints(store, settings)
    app = Starlette(
        routes=[
            Route("/u/{token}", endpoints.unsubscribe, methods=["GET", "POST"]),
            Route("/f/{token}", endpoints.feedback, methods=["GET", "POST"]),
        ],
        exception_handlers={404: _not_found},
    )
    app.state.endpoints = endpoints
    return SecurityHeaders(app, PUBLIC_CSP)
