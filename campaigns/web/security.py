"""Who may reach the preview and what every response carries.

- :func:`check_bind`: the preview (customer data, a "send" button) listens on loopback only, unless
  the caller passed an explicit ``allow_remote`` flag AND a ``preview_password`` is configured.
- :class:`BasicAuth`: HTTP basic auth with that password, on every preview route when one is set.
- :class:`GuardRequests`: a Host allow-list (a rebinding DNS name cannot reach a loopback preview)
  and, for every method but GET/HEAD/OPTIONS, an ``Origin`` header equal to the preview's own origin
  (a missing, ``null`` or foreign Origin is refused) and the per-session token of :class:`SessionTokens`
  (form field ``csrf_token`` or header ``X-Retain-CSRF``): no cross-site form posts, no "send test"
  triggered by another page.
- :func:`security_headers`: no caching, no referrer (the public token must not leak to the shop's
  analytics; the preview sends one to itself only), no framing by other sites, and a strict CSP.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from campaigns.errors import ConfigError

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, allow_remote: bool, password: str) -> None:
    """Refuse to serve the preview beyond loopback without ``--allow-remote`` and a password.

    Raises ConfigError saying which of the two is missing.
    """
    if is_loopback(host):
        return
    if not allow_remote:
        raise ConfigError(
            f"refusing to bind the preview to {host!r}: it shows customer data and can send email. "
            "It listens on 127.0.0.1 by default; pass --allow-remote (and set preview_password) to expose it"
        )
    if not password:
        raise ConfigError(
            f"refusing to bind the preview to {host!r} without a password: set 'preview_password' "
            "(RETAIN_PREVIEW_PASSWORD or retain.toml)"
        )


class BasicAuth:
    """HTTP basic auth (any user name, the configured password) in front of an ASGI app."""

    def __init__(self, app: ASGIApp, password: str, realm: str = "Retain preview") -> None:
        self.app = app
        self.password = password.encode()
        self.realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorised(Headers(scope=scope).get("authorization", "")):
            await self.app(scope, receive, send)
            return
        response = PlainTextResponse(
            "password required",
            status_code=401,
            headers={"WWW-Authenticate": f'Basic realm="{self.realm}", charset="UTF-8"'},
        )
        await response(scope, receive, send)

    def _authorised(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        _, _, given = decoded.partition(b":")
        return hmac.compare_digest(given, self.password)


#: the preview's session cookie and the form field / header carrying its token
SESSION_COOKIE = "retain_preview_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-retain-csrf"
#: largest form body read to find the token (the preview's forms are a few hundred bytes)
MAX_FORM_BYTES = 64 * 1024
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


class SessionTokens:
    """Per-session anti-CSRF tokens: a random session id in an HttpOnly, SameSite=Strict cookie, and
    its token ``HMAC(process key, session id)``, put in every preview form. The key is random per
    process, so tokens die with the preview server."""

    def __init__(self, key: bytes | None = None) -> None:
        self.key = key or secrets.token_bytes(32)

    def token(self, session: str) -> str:
        return hmac.new(self.key, session.encode(), "sha256").hexdigest()

    def valid(self, session: str, token: str) -> bool:
        return bool(session) and bool(token) and hmac.compare_digest(self.token(session), token)


def _cookie(headers: Headers, name: str) -> str:
    jar = SimpleCookie()
    try:
        jar.load(headers.get("cookie", ""))
    except Exception:  # noqa: BLE001 - a malformed cookie header is "no session"
        return ""
    morsel = jar.get(name)
    value = morsel.value if morsel is not None else ""
    return value if len(value) == 43 and value.replace("-", "").replace("_", "").isalnum() else ""


class GuardRequests:
    """Rejects requests whose Host is not allowed, and unsafe methods without a same-origin ``Origin``
    and the session's token (see the module docstring). Refusals are 400 (host) and 403 (the rest)."""

    def __init__(
        self, app: ASGIApp, allowed_hosts: Iterable[str] | None, sessions: SessionTokens | None = None
    ) -> None:
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
        self.sessions = sessions or SessionTokens()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host", "")
        hostname = urlsplit(f"//{host}").hostname or ""
        if self.allowed is not None and hostname.lower() not in self.allowed:
            await PlainTextResponse("unknown host", status_code=400)(scope, receive, send)
            return
        session = _cookie(headers, SESSION_COOKIE)
        new_session = not session
        if new_session:
            session = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf_token"] = self.sessions.token(session)
        if scope["method"] not in SAFE_METHODS:
            origin = headers.get("origin")
            problem = None
            if not origin or origin == "null":
                problem = "no Origin header" if not origin else "Origin is null"
            elif urlsplit(origin).netloc.lower() != host.lower():
                problem = "the request comes from another site"
            if problem is None:
                receive, token = await self._token(scope, receive, headers)
                if new_session or not self.sessions.valid(session, token):
                    problem = "missing or wrong session token (reload the page and try again)"
            if problem is not None:
                response = PlainTextResponse(f"cross-site request refused: {problem}", status_code=403)
                await response(scope, receive, send)
                return

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and new_session:
                cookie = f"{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict"
                message = dict(
                    message, headers=[*message.get("headers", []), (b"set-cookie", cookie.encode())]
                )
            await send(message)

        await self.app(scope, receive, with_cookie)

    async def _token(self, scope: Scope, receive: Receive, headers: Headers) -> tuple[Receive, str]:
        """The token from the header or the url-encoded form body; the body is replayed to the app."""
        if headers.get(CSRF_HEADER):
            return receive, headers[CSRF_HEADER]
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_FORM_BYTES:
                return receive, ""
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        token = ""
        if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            values = parse_qs(body.decode("latin-1"), max_num_fields=100).get(CSRF_FIELD)
            token = values[0] if values else ""
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay, token


def security_headers(csp: str, referrer: str = "no-referrer") -> list[tuple[bytes, bytes]]:
    """``referrer``: ``no-referrer`` for the public pages (the token must not leak); the preview uses
    ``same-origin``, because under ``no-referrer`` a browser sends ``Origin: null`` on its own form
    posts, which the preview's cross-origin guard refuses."""
    return [
        (b"cache-control", b"no-store"),
        (b"referrer-policy", referrer.encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"SAMEORIGIN"),
        (b"content-security-policy", csp.encode()),
    ]


class SecurityHeaders:
    """Adds :func:`security_headers` to every response that does not set its own CSP."""

    def __init__(self, app: ASGIApp, csp: str, referrer: str = "no-referrer") -> None:
        self.app = app
        self.headers = security_headers(csp, referrer)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message = dict(message, headers=list(message.get("headers", [])) + extra)
            await send(message)

        await self.app(scope, receive, with_headers)
