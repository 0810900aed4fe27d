"""The go-live checklist: what must be true before Retain mails real people.

``retain doctor`` prints every check; a send through a real transport (anything but the outbox,
console and memory senders) refuses while a **must** fails, listing what to fix. ``--allow-unsafe-send``
(or ``RETAIN_ALLOW_UNSAFE_SEND=1``) overrides the refusal for a test server, and the run records what
was overridden (``runs.unsafe_send``). The checks are offline: nothing here touches the network.

must:   public URL (set, https, not loopback/private), From domain (not example.*, .test, .invalid,
        .localhost, .local), the shop's physical address (set, not the demo's), no demo identities in the
        database, the signing key (present and long enough)
should: DKIM (selector, domain, readable key), secret key backed up, quiet hours, frequency cap,
        sender rate limit
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from campaigns.config import Settings
from campaigns.errors import ConfigError

#: senders that never reach a real inbox
SAFE_SCHEMES = frozenset({"outbox", "file", "console", "memory"})
#: the address of the bundled demo settings, treated as "no address"
DEMO_ADDRESSES = frozenset({Settings.shop_address, "1 Example Street, London EC1A 1AA, United Kingdom"})
#: domains of demo identities (the Online Retail import makes customer-<id>@example.com)
DEMO_DOMAINS = ("example.com", "example.org", "example.net")
_RESERVED_DOMAIN = re.compile(
    r"(^|\.)(example(\.(com|org|net))?|test|invalid|localhost|local)$", re.IGNORECASE
)


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    must: bool
    detail: str  # what was found, or what to do when not ok

    @property
    def label(self) -> str:
        return "ok" if self.ok else ("MISSING" if self.must else "advice")


def is_real_transport(sender: Any) -> bool:
    """True unless ``sender`` (a DSN, an alias, or a sender object) is the outbox, console or memory."""
    if sender is None:
        return False
    if not isinstance(sender, str):
        return type(sender).__name__ not in {"OutboxSender", "ConsoleSender", "MemorySender"}
    spec = sender.strip().lower()
    scheme = spec.split("://", 1)[0] if "://" in spec else spec
    return scheme not in SAFE_SCHEMES


def reserved_domain(domain: str) -> bool:
    """example.com / shop.example.com / *.example / .test / .invalid / .localhost / .local."""
    return bool(_RESERVED_DOMAIN.search(domain.strip().rstrip(".")))


def _public_url(url: str) -> Check:
    name = "public URL (unsubscribe and feedback links)"
    if not url.strip():
        return Check(
            name, False, True, "public_url is unset: set it to the https address `retain serve` is behind"
        )
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    if parts.scheme != "https":
        return Check(name, False, True, f"{url} is not https (RFC 8058 one-click unsubscribe needs https)")
    loopback = host in {"localhost", ""} or host.endswith(".localhost")
    try:
        ip = ipaddress.ip_address(host)
        loopback = loopback or ip.is_loopback or ip.is_private or ip.is_unspecified or ip.is_link_local
    except ValueError:
        pass
    if loopback:
        return Check(
            name, False, True, f"{url} points at this machine or a private network: customers cannot reach it"
        )
    if reserved_domain(host):
        return Check(name, False, True, f"{url} is a reserved example/test domain")
    return Check(name, True, True, url)


def _from_domain(from_address: str, where: str) -> Check:
    name = f"From domain ({where})"
    addr = parseaddr(from_address)[1]
    domain = addr.rpartition("@")[2]
    if not domain:
        return Check(name, False, True, f"{from_address!r} has no address: set from_address")
    if reserved_domain(domain):
        return Check(
            name, False, True, f"{domain} is a reserved example/test domain: set from_address to your shop's"
        )
    return Check(name, True, True, domain)


def _address(address: str) -> Check:
    name = "shop's physical address (email footer; CAN-SPAM, GDPR)"
    if not address.strip() or address.strip() in DEMO_ADDRESSES:
        return Check(name, False, True, "shop_address is unset or the demo's: set your postal address")
    return Check(name, True, True, address)


def _secret(settings: Settings) -> list[Check]:
    from campaigns.keys import backed_up, check_key

    try:
        check_key(settings)
    except ConfigError as exc:
        return [Check("secret key (signs unsubscribe links)", False, True, str(exc))]
    present = Check("secret key (signs unsubscribe links)", True, True, "present")
    if backed_up(settings):
        return [present, Check("secret key backed up", True, False, "the current keys are in a backup")]
    return [
        present,
        Check(
            "secret key backed up",
            False,
            False,
            "losing var/ would break every link in mail already sent: run `retain secret backup FILE`",
        ),
    ]


def _dkim(settings: Settings) -> Check:
    name = "DKIM signing (selector, domain, private key)"
    if not (settings.dkim_selector and settings.dkim_domain and settings.dkim_private_key_path):
        return Check(
            name, False, False, "set dkim_selector, dkim_domain and dkim_private_key_path (docs/senders.md)"
        )
    key = Path(settings.dkim_private_key_path)
    try:
        readable = key.is_file() and b"PRIVATE KEY" in key.read_bytes()[:200]
    except OSError:
        readable = False
    if not readable:
        return Check(name, False, False, f"{key} is not a readable PEM private key")
    return Check(name, True, False, f"{settings.dkim_selector}._domainkey.{settings.dkim_domain}")


def _demo_identities(store: Any) -> Check:
    name = "no demo identities in the database"
    n = int(store.customers_in_domains(DEMO_DOMAINS))
    if n:
        return Check(
            name,
            False,
            True,
            f"{n:,} customers have demo addresses (@{', @'.join(DEMO_DOMAINS)}): this is demo data — "
            f"use your own database (`retain init DIR`)",
        )
    return Check(name, True, True, "none")


def checklist(settings: Settings, store: Any = None, definition: Any = None) -> list[Check]:
    """Every go-live check; ``store`` adds the demo-identity check, ``definition`` the campaign's From."""
    checks = [_public_url(settings.public_url), _from_domain(settings.from_address, "from_address")]
    if settings.demo_database:
        checks.insert(
            0,
            Check(
                "the shop's own configuration",
                False,
                True,
                "retain.toml is the demo's (demo_database is set): run `retain init DIR` for your shop's own",
            ),
        )
    if definition is not None and definition.from_:
        checks.append(_from_domain(definition.from_, f"{definition.name}'s from:"))
    checks.append(_address(settings.shop_address))
    if store is not None:
        checks.append(_demo_identities(store))
    checks += _secret(settings)
    checks.append(_dkim(settings))
    checks.append(
        Check(
            "quiet hours",
            bool(settings.quiet_hours),
            False,
            settings.quiet_hours or "none: set quiet_hours, e.g. 21-8",
        )
    )
    checks.append(
        Check(
            "frequency cap",
            settings.frequency_cap > 0,
            False,
            f"{settings.frequency_cap} per {settings.frequency_window_days} days"
            if settings.frequency_cap > 0
            else "none: set frequency_cap (e.g. 3) so customers are not flooded",
        )
    )
    rate = _dsn_rate(settings.resolved_sender()) or settings.send_rate
    checks.append(
        Check(
            "sender rate limit",
            rate > 0,
            False,
            f"{rate:g} messages/s"
            if rate > 0
            else "unlimited: set send_rate (or ?rate= on the sender DSN) to what your mail provider allows (e.g. 10)",
        )
    )
    return checks


def _dsn_rate(sender: str) -> float:
    """The ``?rate=`` of a sender DSN (it overrides send_rate), 0 when absent or unreadable."""
    from urllib.parse import parse_qs

    values = parse_qs(urlsplit(sender).query).get("rate", [])
    try:
        return float(values[-1]) if values else 0.0
    except ValueError:
        return 0.0


def failed_musts(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.must and not c.ok]


def guard_send(settings: Settings, store: Any, definition: Any, sender: Any) -> list[Check]:
    """Before a real send: raise ConfigError listing each failed must, unless ``allow_unsafe_send``.

    Returns the failed musts that were overridden (empty when all pass or the transport is not real)."""
    if not is_real_transport(sender):
        return []
    failed = failed_musts(checklist(settings, store, definition))
    if not failed or settings.allow_unsafe_send:
        return failed
    lines = "\n".join(f"  - {c.name}: {c.detail}" for c in failed)
    raise ConfigError(
        f"refusing to send {definition.name} through a real transport ({_masked(sender)}): fix these first\n"
        f"{lines}\n`retain doctor` shows the whole checklist; for a test server pass --allow-unsafe-send "
        f"(or RETAIN_ALLOW_UNSAFE_SEND=1) and the run records it"
    )


def _masked(sender: Any) -> str:
    if not isinstance(sender, str):
        return type(sender).__name__
    from campaigns.senders.dsn import mask_dsn

    return mask_dsn(sender)


def overridden_text(failed: list[Check]) -> str:
    return "; ".join(f"{c.name}: {c.detail}" for c in failed)
