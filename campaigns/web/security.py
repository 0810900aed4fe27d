"""Who may reach the preview and what every response carries.

- :func:`check_bind`: the preview (customer data, a "send" button) listens on loopback only, unless
  the caller passed an explicit ``allow_remote`` flag AND a ``preview_password`` is configured.
- :class:`BasicAuth`: HTTP basic auth with that password, on every preview route when one is set.
- :class:`GuardRequests`: a Host allow-list (a rebinding DNS name cannot reach a loopback preview)
  and, for unsafe methods, an Origin that matches the host (no cross-site form posts).
- :func:`security_headers`: no caching, no referrer (the public token must not leak to the shop's
  analytics), no framing by other sites, and a strict CSP.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

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


class GuardRequests:
    """Rejects requests whose Host is not allowed, and unsafe methods from another origin."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] | None) -> None:
        self.app = app
        self.allowed = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}

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
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD", "OPTIONS") and origin and origin != "null":
            if urlsplit(origin).netloc.lower() != host.lower():
                await PlainTextResponse("cross-site request refused", status_code=403)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def security_headers(csp: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"cache-control", b"no-store"),
        (b"referrer-policy", b"no-referrer"),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"SAMEORIGIN"),
        (b"content-security-policy", csp.encode()),
    ]


class SecurityHeaders:
    """Adds :func:`security_headers` to every response that does not set its own CSP."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.headers = security_headers(csp)

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
