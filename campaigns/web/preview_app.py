"""The preview app (``retain preview``): campaigns, one email as a customer sees it, and the dashboard.

Routes::

    GET  /                              campaigns with kind, segment size, schedule, lint status
    GET  /campaigns/<name>              the preview page (?customer=<db id>; none = the fixture;
                                        ?width=desktop|mobile&tab=html|text|headers|source)
    POST /campaigns/<name>/customer     pick a customer: q=<id, shop id or email> or random=1 (303)
                                        (every POST: same-origin Origin + the session token; security.py)
    GET  /campaigns/<name>/email.html   the email's HTML alone, for the sandboxed iframe
                                        (&mode=dark: its dark-mode styles forced on; &images=off: no
                                        image loads, as a client that blocks them shows the email)
    GET  /campaigns/<name>/checks       the email's check results (campaigns/checks), an HTML fragment
    POST /campaigns/<name>/send-test    send to an address through the configured sender ([TEST])
    GET  /events                        server-sent events: "reload" when a template is saved
    GET  /dashboard                     retention charts and campaign impact (?days=N)

Customer emails are looked up by POST and never appear in a URL; pages refer to the database id.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from campaigns.config import Settings
from campaigns.errors import RetainError
from campaigns.web.dashboard import build_dashboard
from campaigns.web.pages import render_page
from campaigns.web.preview import PreviewResult, PreviewService
from campaigns.web.reload import TemplateWatcher
from campaigns.web.security import LOOPBACK_NAMES, BasicAuth, GuardRequests, SecurityHeaders

PREVIEW_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' https: http: data:; frame-ancestors 'self'; form-action 'self'"
)
#: the email itself: no script of any kind, images and inline styles only
EMAIL_CSP = "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; font-src https: data:"
#: the email with images blocked, as a mail client that does not load them shows it (alt text instead)
EMAIL_CSP_NO_IMAGES = "default-src 'none'; img-src 'none'; style-src 'unsafe-inline'; font-src https: data:"
_DARK_QUERY = "(prefers-color-scheme: dark)"
WIDTHS = ("desktop", "mobile")
MODES = ("light", "dark")
IMAGES = ("on", "off")
TABS = ("html", "text", "headers", "source")


def _customer_param(request: Request) -> int | None:
    raw = request.query_params.get("customer", "")
    return int(raw) if raw.isdigit() else None


def _choice(request: Request, key: str, options: tuple[str, ...]) -> str:
    value = request.query_params.get(key, options[0])
    return value if value in options else options[0]


class PreviewRoutes:
    def __init__(self, service: PreviewService, watcher: TemplateWatcher) -> None:
        self.service = service
        self.watcher = watcher

    async def index(self, request: Request) -> Response:
        try:
            campaigns = await run_in_threadpool(self.service.campaigns)
            error = None
        except RetainError as exc:
            campaigns, error = [], str(exc)
        return render_page(
            "index.html",
            campaigns=campaigns,
            error=error,
            model_error=await run_in_threadpool(lambda: self.service.recommender_error),
            nav="campaigns",
        )

    async def campaign(self, request: Request) -> Response:
        return await self._page(
            request, request.path_params["name"], _customer_param(request), _notice(request)
        )

    async def _page(
        self, request: Request, name: str, customer_id: int | None, notice: tuple[bool, str] | None
    ) -> Response:
        result: PreviewResult = await run_in_threadpool(self.service.render, name, customer_id)
        query = {"customer": customer_id} if customer_id is not None else {}
        return render_page(
            "campaign.html",
            status_code=404 if result.kind == "?" else 200,
            r=result,
            name=name,
            customer_id=customer_id,
            width=_choice(request, "width", WIDTHS),
            tab=_choice(request, "tab", TABS),
            mode=_choice(request, "mode", MODES),
            images=_choice(request, "images", IMAGES),
            email_src=f"/campaigns/{name}/email.html?{urlencode(query)}",
            checks_src=f"/campaigns/{name}/checks?{urlencode(query)}",
            version=self.watcher.version,
            notice=notice,
            csrf=request.state.csrf_token,
            model_error=self.service.recommender_error,
            nav="campaigns",
        )

    async def pick_customer(self, request: Request) -> Response:
        name = request.path_params["name"]
        form = await request.form()
        try:
            if form.get("random"):
                customer = await run_in_threadpool(self.service.random_customer, name)
            else:
                customer = await run_in_threadpool(self.service.find_customer, str(form.get("q", "")))
        except RetainError as exc:
            return RedirectResponse(
                f"/campaigns/{name}?{urlencode({'error': str(exc)[:200]})}", status_code=303
            )
        keep = {k: str(form[k]) for k in ("width", "tab", "mode", "images") if form.get(k)}
        return RedirectResponse(
            f"/campaigns/{name}?{urlencode({'customer': customer.id, **keep})}", status_code=303
        )

    async def email_html(self, request: Request) -> Response:
        result = await run_in_threadpool(
            self.service.render, request.path_params["name"], _customer_param(request)
        )
        images_off = request.query_params.get("images") == "off"
        headers = {"content-security-policy": EMAIL_CSP_NO_IMAGES if images_off else EMAIL_CSP}
        if result.rendered is None:
            body = f"<p style='font-family:sans-serif;color:#6b7280;padding:24px'>{_text(result)}</p>"
            return HTMLResponse(body, headers=headers)
        html = result.rendered.html
        if request.query_params.get("mode") == "dark":
            html = force_dark(html)
        return HTMLResponse(html, headers=headers)

    async def checks(self, request: Request) -> Response:
        report = await run_in_threadpool(
            self.service.checks, request.path_params["name"], _customer_param(request)
        )
        if isinstance(report, str):
            return render_page("checks.html", report=None, reason=report)
        return render_page("checks.html", report=report, reason=None)

    async def send_test(self, request: Request) -> Response:
        name = request.path_params["name"]
        form = await request.form()
        customer_raw = str(form.get("customer", ""))
        customer_id = int(customer_raw) if customer_raw.isdigit() else None
        outcome = await run_in_threadpool(self.service.send_test, name, str(form.get("to", "")), customer_id)
        return await self._page(request, name, customer_id, (outcome.ok, outcome.detail))

    async def events(self, request: Request) -> Response:
        async def stream() -> AsyncIterator[str]:
            async for frame in self.watcher.changes():
                yield frame

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def dashboard(self, request: Request) -> Response:
        raw = request.query_params.get("days", "7")
        days = int(raw) if raw.isdigit() and 1 <= int(raw) <= 90 else 7
        data = await run_in_threadpool(build_dashboard, self.service.store, days=days)
        return render_page("dashboard.html", d=data, nav="dashboard")


def force_dark(html: str) -> str:
    """The email as a dark-mode client shows it: its ``prefers-color-scheme: dark`` rules always apply."""
    html = html.replace(f"@media {_DARK_QUERY}", "@media all").replace(_DARK_QUERY, "all")
    return html.replace("<head>", '<head><meta name="color-scheme" content="dark">', 1)


def _notice(request: Request) -> tuple[bool, str] | None:
    error = request.query_params.get("error")
    return (False, error) if error else None


def _text(result: PreviewResult) -> str:
    from markupsafe import escape

    if result.error:
        return str(escape(result.error))
    return f"This customer would be skipped: {escape(result.skip_reason or '')}"


def create_preview_app(
    store: Any,
    settings: Settings,
    *,
    segments_file: Path | None = None,
    recommender: Any | None = None,
    allowed_hosts: list[str] | None = None,
    watch: bool = True,
) -> Any:
    """The preview ASGI app.

    ``allowed_hosts`` defaults to the loopback names (pass the public name when serving with
    ``--allow-remote``); a configured ``settings.preview_password`` puts every route behind basic
    auth. ``recommender`` overrides the saved model (tests); ``watch=False`` disables live reload.
    """
    service = PreviewService(store, settings, segments_file=segments_file, recommender=recommender)
    watcher = TemplateWatcher(Path(settings.templates_dir))
    routes = PreviewRoutes(service, watcher)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if watch:
            await watcher.start()
        try:
            yield
        finally:
            await watcher.stop()

    app = Starlette(
        routes=[
            Route("/", routes.index),
            Route("/campaigns/{name}", routes.campaign),
            Route("/campaigns/{name}/customer", routes.pick_customer, methods=["POST"]),
            Route("/campaigns/{name}/email.html", routes.email_html),
            Route("/campaigns/{name}/checks", routes.checks),
            Route("/campaigns/{name}/send-test", routes.send_test, methods=["POST"]),
            Route("/events", routes.events),
            Route("/dashboard", routes.dashboard),
        ],
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.watcher = watcher
    # same-origin: the browser then sends the real Origin on the preview's own form posts
    wrapped: Any = SecurityHeaders(app, PREVIEW_CSP, referrer="same-origin")
    hosts = allowed_hosts if allowed_hosts is not None else [h.strip("[]") for h in LOOPBACK_NAMES]
    wrapped = GuardRequests(wrapped, hosts)
    if settings.preview_password:
        wrapped = BasicAuth(wrapped, settings.preview_password)
    return wrapped
