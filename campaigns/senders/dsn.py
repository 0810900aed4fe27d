"""Sender DSNs in the style of Symfony Mailer / dj-email-url.

    smtp://user:pass@host:587?tls=starttls     smtps://user:pass@host:465
    outbox:///abs/path/to/maildir               outbox://relative/dir
    console://                                  memory://   (or memory://NAME for a named mailbox)

The password may be percent-encoded in the DSN or come from ``RETAIN_SMTP_PASSWORD``
(``Settings.smtp_password``). It is never part of ``repr``/``str``: :func:`mask_dsn` replaces it with
``***`` in anything shown to a user.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from campaigns.errors import ConfigError

SCHEMES = ("smtp", "smtps", "outbox", "console", "memory")

VALID_FORMS = (
    "smtp://[user[:password]@]host[:port][?tls=starttls|none|auto&rate=N&concurrency=N...], "
    "smtps://[user[:password]@]host[:port], outbox:///absolute/dir or outbox://relative/dir, "
    "console://, memory://[name], an alias (smtp, outbox, console, memory) "
    "or a dotted path package.module:Class"
)

_USERINFO_PASSWORD = re.compile(r"(?P<head>^[A-Za-z][A-Za-z0-9+.-]*://[^:/@?#]*):[^/?#]*@")


def mask_dsn(spec: str) -> str:
    """``spec`` with any password in its user-info replaced by ``***`` (works on malformed DSNs too)."""
    return _USERINFO_PASSWORD.sub(r"\g<head>:***@", spec)


@dataclass(frozen=True)
class SenderDSN:
    """A parsed DSN; ``options`` are the query-string pairs (last one wins), lower-cased keys."""

    scheme: str
    host: str = ""
    port: int | None = None
    username: str = ""
    password: str = field(default="", repr=False)
    path: str = ""
    options: dict[str, str] = field(default_factory=dict)
    raw: str = field(default="", repr=False)

    def __str__(self) -> str:
        return mask_dsn(self.raw)

    def option(self, name: str, default: str = "") -> str:
        return self.options.get(name, default)

    def typed_options(self, casts: Mapping[str, Callable[[str], Any]]) -> dict[str, Any]:
        """The options named in ``casts`` that the DSN sets, each converted by its cast (``int``, ``float``).

        Raises ConfigError naming the (masked) DSN, the option and the expected type for a bad value.
        """
        values: dict[str, Any] = {}
        for name, cast in casts.items():
            if name in self.options:
                try:
                    values[name] = cast(self.options[name])
                except ValueError:
                    expected = getattr(cast, "__name__", "valid")
                    raise ConfigError(
                        f"sender DSN {str(self)!r}: option {name}={self.options[name]!r} must be {expected}"
                    ) from None
        return values


def looks_like_dsn(spec: str) -> bool:
    """True when ``spec`` has a ``scheme://`` prefix (as opposed to an alias or a dotted path)."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", spec) is not None


def parse_dsn(spec: str) -> SenderDSN:
    """Parse a sender DSN; raises ConfigError naming the (masked) DSN and the valid forms."""
    shown = mask_dsn(spec)

    def bad(why: str) -> ConfigError:
        return ConfigError(f"sender DSN {shown!r}: {why}. Valid forms: {VALID_FORMS}")

    if not looks_like_dsn(spec):
        raise bad("expected scheme://...")
    try:
        parts = urlsplit(spec)
        port = parts.port
    except ValueError as exc:
        raise bad(str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise bad(f"unknown scheme {scheme!r} (known: {', '.join(SCHEMES)})")
    if parts.fragment:
        raise bad("a DSN has no #fragment")
    options = {k.lower(): v for k, v in parse_qsl(parts.query, keep_blank_values=True)}
    host = unquote(parts.hostname or "")
    path = unquote(parts.path)
    if scheme == "outbox":
        # outbox://relative/dir keeps "relative" (the netloc) as the first path segment
        if parts.username or parts.password or port:
            raise bad("an outbox DSN names a directory, not a server")
        path = unquote(parts.netloc) + path if parts.netloc else path
        if not path:
            raise bad("outbox needs a directory, e.g. outbox://var/outbox")
        host = ""
    elif scheme in ("smtp", "smtps"):
        if not host:
            raise bad("no host")
        if path not in ("", "/"):
            raise bad("an SMTP DSN has no path")
    return SenderDSN(
        scheme=scheme,
        host=host,
        port=port,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        path=path,
        options=options,
        raw=spec,
    )
