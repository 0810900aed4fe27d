"""``/c/<token>``: the tracked-link redirect of ``retain serve`` (campaigns/tracking.py).

``GET`` stores the click (human or flagged, campaigns/clicks.py) and answers ``302`` to the URL inside the
signed token, and only to it: the destination is never read from the query string, so the endpoint
cannot be turned into an open redirect. ``HEAD`` answers the same redirect and stores nothing (link
checkers and prefetchers probe with HEAD). A forged, altered, expired or other-purpose token is a 400
page with no ``Location`` header.

Recording a click is the one thing a GET on the public app writes: it is a measurement, not a change
to the customer's state (unsubscribing and feedback comments need a POST).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from campaigns.config import Settings
from campaigns.errors import TokenError
from campaigns.tracking import ClickToken, read_click_token
from campaigns.web.pages import render_page


class ClickEndpoint:
    """The ``/c/`` handler; ``store`` is a :class:`campaigns.store.Store` (the ClickStore part)."""

    def __init__(self, store: Any, settings: Settings, *, clock: Any = None) -> None:
        self.store = store
        self.settings = settings
        from campaigns.keys import LiveKeys

        self.secret = LiveKeys(settings)  # the current key and rotated ones still kept (docs/security.md)
        self.clock = clock or (lambda: datetime.now(UTC))

    async def redirect(self, request: Request) -> Response:
        try:
            click = read_click_token(
                self.secret, request.path_params["token"], self.settings.token_max_age_days
            )
        except TokenError as exc:
            shop = {"name": self.settings.shop_name, "url": self.settings.shop_url}
            return render_page("public_error.html", status_code=400, shop=shop, message=str(exc))
        if request.method == "GET":
            await run_in_threadpool(self._record, click, request.headers.get("user-agent"))
        return RedirectResponse(click.url, status_code=302, headers={"Cache-Control": "no-store"})

    def _record(self, click: ClickToken, user_agent: str | None) -> None:
        self.store.record_click(
            campaign=click.campaign,
            run_key=click.run_key,
            customer_id=click.customer_id,
            url=click.url,
            variant=click.variant,
            user_agent=user_agent,
            clicked_at=self.clock().astimezone(UTC).replace(tzinfo=None),
        )


__all__ = ["ClickEndpoint"]
