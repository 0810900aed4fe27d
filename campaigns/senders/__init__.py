"""Pluggable senders, resolved from a DSN, an alias or a dotted path.

    resolve_sender("smtp://mailer@smtp.example.com:587?tls=starttls", settings)   # password: RETAIN_SMTP_PASSWORD
    resolve_sender("outbox:///srv/retain/outbox", settings)
    resolve_sender("memory", settings)                     # alias -> memory://
    resolve_sender("myshop.mail:PostmarkSender", settings)  # dotted path

A dotted path names a class or factory: if it has ``from_settings(settings)`` that is called, otherwise it is
called with no arguments; an object that already is a sender is used as it is. See docs/senders.md.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from campaigns.config import Settings
from campaigns.errors import ConfigError
from campaigns.senders.base import OutgoingMessage, Sender, SenderBase, SendResult, SendStatus
from campaigns.senders.dsn import VALID_FORMS, SenderDSN, looks_like_dsn, mask_dsn, parse_dsn
from campaigns.senders.policy import POLICY_OPTIONS, DeliveryPolicy, PolicySender

__all__ = [
    "ALIASES",
    "POLICY_OPTIONS",
    "DeliveryPolicy",
    "OutgoingMessage",
    "PolicySender",
    "SendResult",
    "SendStatus",
    "Sender",
    "SenderBase",
    "SenderDSN",
    "mask_dsn",
    "parse_dsn",
    "resolve_sender",
    "sender_from_dsn",
]

#: alias -> the DSN it stands for ("{outbox}" is the configured default outbox directory)
ALIASES: dict[str, str] = {
    "smtp": "smtp://127.0.0.1:25",
    "smtps": "smtps://127.0.0.1:465",
    "outbox": "outbox://{outbox}",
    "file": "outbox://{outbox}",
    "console": "console://",
    "memory": "memory://",
}

_DOTTED = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*([.:][A-Za-z_]\w*)$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def resolve_sender(spec: str | Sender, settings: Settings) -> Sender:
    """The sender for ``spec``: a DSN, an alias from :data:`ALIASES`, a dotted path, or a sender object.

    Raises ConfigError (naming the spec with its password masked, and the valid forms) for anything else.
    """
    if not isinstance(spec, str):
        if hasattr(spec, "send_batch"):
            return spec
        raise ConfigError(f"not a sender: {spec!r}. Valid forms: {VALID_FORMS}")
    spec = spec.strip()
    if not spec:
        spec = settings.resolved_sender()
    if spec.lower() in ALIASES:
        outbox_dir = str(settings.var_path / "outbox")
        return sender_from_dsn(parse_dsn(ALIASES[spec.lower()].format(outbox=outbox_dir)), settings)
    if looks_like_dsn(spec):
        return sender_from_dsn(parse_dsn(spec), settings)
    if _DOTTED.match(spec) and ("." in spec or ":" in spec):
        return _from_dotted_path(spec, settings)
    raise ConfigError(
        f"sender {mask_dsn(spec)!r} is not a DSN, an alias or a dotted path. Valid forms: {VALID_FORMS}"
    )


def sender_from_dsn(dsn: SenderDSN, settings: Settings) -> Sender:
    """Build the sender a parsed DSN describes (settings fill what the DSN leaves out)."""
    if dsn.scheme in ("smtp", "smtps"):
        return _smtp_sender(dsn, settings)
    known: dict[str, tuple[str, ...]] = {
        "outbox": ("fsync",),
        "console": ("headers_only",),
        "memory": ("bounce",),
    }
    _check_options(dsn, known[dsn.scheme])
    if dsn.scheme == "outbox":
        from campaigns.senders.outbox import OutboxSender

        return OutboxSender(dsn.path, fsync=_flag(dsn, "fsync", False))
    if dsn.scheme == "console":
        from campaigns.senders.console import ConsoleSender

        return ConsoleSender(headers_only=_flag(dsn, "headers_only", False))
    from campaigns.senders.memory import MemorySender

    bounce = [a for a in dsn.option("bounce").split(",") if a]
    return MemorySender(mailbox=(dsn.host or dsn.path.strip("/") or "default"), bounce=bounce)


#: SMTP transport options (the delivery policy's options, POLICY_OPTIONS, are accepted as well)
_SMTP_OPTIONS: dict[str, Callable[[str], Any]] = {
    "tls": str,
    "verify": str,
    "timeout": float,
    "max_per_connection": int,
    "helo": str,
    "final_reply_timeout": float,
    "cafile": str,
    "capath": str,
}


def _smtp_sender(dsn: SenderDSN, settings: Settings) -> Sender:
    from campaigns.senders.smtp import SmtpOptions, SmtpSender

    _check_options(dsn, (*_SMTP_OPTIONS, *POLICY_OPTIONS))
    policy = DeliveryPolicy.from_dsn(dsn, settings)
    values = dsn.typed_options({k: v for k, v in _SMTP_OPTIONS.items() if k != "verify"})
    tls = values.pop("tls", "implicit" if dsn.scheme == "smtps" else "auto").lower()
    if dsn.scheme == "smtps" and tls != "implicit":
        raise ConfigError(
            f"sender DSN {str(dsn)!r}: smtps:// always uses implicit TLS; use smtp:// for tls={tls}"
        )
    default_port = 465 if tls == "implicit" else 587 if tls == "starttls" else 25
    options = SmtpOptions(
        host=dsn.host,
        port=dsn.port or default_port,
        tls=tls,
        username=dsn.username,
        password=dsn.password or settings.smtp_password,
        verify=_flag(dsn, "verify", True),
        local_hostname=values.pop("helo", None),
        **values,
    )
    return SmtpSender(options, policy)


def _check_options(dsn: SenderDSN, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(dsn.options) - set(allowed))
    if unknown:
        choices = ", ".join(allowed) or "none"
        raise ConfigError(
            f"sender DSN {str(dsn)!r}: unknown option(s) {', '.join(unknown)} (known: {choices})"
        )


def _flag(dsn: SenderDSN, name: str, default: bool) -> bool:
    raw = dsn.option(name).strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"sender DSN {str(dsn)!r}: option {name}={raw!r} must be 1/0, true/false, yes/no")


def _from_dotted_path(spec: str, settings: Settings) -> Sender:
    module_name, _, attr = spec.rpartition(":") if ":" in spec else spec.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"sender {spec!r}: cannot import module {module_name!r} ({exc})") from None
    target = getattr(module, attr, None)
    if target is None:
        raise ConfigError(f"sender {spec!r}: module {module_name!r} has no attribute {attr!r}")
    if hasattr(target, "send_batch") and not isinstance(target, type):
        return target  # already a sender object
    factory = getattr(target, "from_settings", None)
    try:
        sender = factory(settings) if callable(factory) else target()
    except TypeError as exc:
        raise ConfigError(
            f"sender {spec!r}: cannot build it ({exc}); give the class a from_settings(settings) classmethod "
            "or a constructor without required arguments"
        ) from None
    if not hasattr(sender, "send_batch"):
        raise ConfigError(f"sender {spec!r}: {type(sender).__name__} has no send_batch method")
    return sender
