"""Settings: the environment first, then ``retain.toml``, then defaults.

This is the only module that reads ``os.environ``. Entry points call :func:`load_settings` once
and pass the frozen :class:`Settings` down; nothing else looks settings up by itself.

Every field has an environment variable ``RETAIN_<FIELD upper-cased>`` and a key of the same
name (lower-case) in ``retain.toml`` (top level, or grouped in any ``[table]`` — tables are only
for readability). Example::

    database_url = "postgresql+psycopg://postgres@127.0.0.1/test"
    sender = "smtp://mailer@smtp.example.com:587?tls=starttls"
    [shop]
    shop_name = "Paper & Pine"

Secrets (``smtp_password``, ``secret_key``) are never shown by ``repr``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaigns.errors import ConfigError

ENV_PREFIX = "RETAIN_"
#: a BCP 47 language tag as emails use it: language, then optional script / region / variant subtags
LOCALE_RE = re.compile(r"^[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
DEFAULT_CONFIG_FILE = "retain.toml"


@dataclass(frozen=True)
class Settings:
    """Every setting Retain has, with its documented default."""

    # where things live
    database_url: str = ""  # default: sqlite:///<var_dir>/retain.db
    #: set only in the checkout's demo retain.toml: the one database its settings are meant for; with any
    #: other database Retain warns and the go-live checks fail (`retain init DIR` makes a shop's own config)
    demo_database: str = ""
    var_dir: str = "var"
    templates_dir: str = "templates"
    segments_file: str = "segments.yaml"
    model_path: str = ""  # default: <var_dir>/model/retain-model (.npz + .json)
    # the shop (used in every email's footer and links)
    shop_name: str = "Retain Demo Shop"
    shop_address: str = "1 Example Street, London EC1A 1AA, United Kingdom"
    shop_url: str = "https://shop.example.com"
    shop_timezone: str = "Europe/London"
    currency: str = "GBP"
    #: the language the emails are written in (BCP 47, e.g. "en", "en-GB", "de", "ar"): <html lang> and,
    #: for right-to-left scripts (ar, he, fa, ur ...), dir="rtl"; a campaign's `locale:` key overrides it
    locale: str = "en"
    #: the largest email HTML Retain sends (KB): Gmail clips HTML above ~102 KB, hiding the footer; a bigger
    #: email is skipped ("email too large"), and `retain lint` fails a campaign whose largest context exceeds it
    max_email_kb: int = 100
    #: catalogue imports: the product page's URL; placeholders {shop_url}, {handle}, {sku}, {id}
    #: ("" = the format's default: Shopify {shop_url}/products/{handle}, WooCommerce {shop_url}/?p={id})
    product_url_template: str = ""
    from_address: str = "Retain Demo Shop <hello@shop.example.com>"
    reply_to: str = ""
    public_url: str = "http://127.0.0.1:8026"  # base of unsubscribe/feedback links
    unsubscribe_mailto: str = "unsubscribe@shop.example.com"
    # sending
    sender: str = ""  # default: outbox://<var_dir>/outbox
    smtp_password: str = field(default="", repr=False)
    dispatcher: str = "local"  # local | celery
    broker_url: str = "redis://127.0.0.1:6379/0"
    celery_queue: str = "retain"  # the broker queue runs are enqueued on (`retain worker --queues`)
    send_concurrency: int = 64
    send_rate: float = 0.0  # messages per second, 0 = unlimited
    batch_size: int = 500
    max_consecutive_failures: int = 50
    # audience rules
    #: the "now" used for segments and analytics: "" = the real clock; "latest-order" = the newest order in
    #: the store (for historical data such as the bundled 2010-2011 sample); or an ISO date/time
    as_of: str = ""
    holdout_share: float = 0.10
    frequency_cap: int = 3  # marketing emails per window, across all campaigns (0 = no cap)
    frequency_window_days: int = 7
    quiet_hours: str = "21-8"  # local hours with no sending: "start-end", empty = none
    soft_opt_in: bool = False  # treat customers with a purchase and no recorded refusal as opted in
    # imports: dates outside [import_earliest_date, now + import_max_days_ahead] are refused
    import_earliest_date: str = "1970-01-01"
    import_max_days_ahead: int = 365
    # links and tracking
    utm_source: str = "retain"
    utm_medium: str = "email"
    # security
    secret_key: str = field(default="", repr=False)  # default: generated once into <var_dir>/secret.key
    token_max_age_days: int = 365
    #: how long a key replaced by `retain secret rotate` still verifies links (days)
    rotated_key_days: int = 365
    #: send through a real transport even when the go-live checks fail (a test server; the run records it)
    allow_unsafe_send: bool = False
    #: HTTP basic-auth password for `retain preview` (required, with --allow-remote, to bind beyond loopback)
    preview_password: str = field(default="", repr=False)
    # email checks (`retain check`, lint, the preview; docs/checks.md)
    #: Can I Email clients to check against (caniemail globs, comma-separated): Apple Mail, Gmail web and
    #: apps, Outlook desktop (Windows, Mac), new Outlook / Outlook.com, Yahoo
    check_clients: str = (
        "apple-mail.macos,apple-mail.ios,gmail.desktop-webmail,gmail.ios,gmail.android,"
        "outlook.windows,outlook.macos,outlook.outlook-com,yahoo.desktop-webmail,yahoo.ios,yahoo.android"
    )
    chromium_path: str = "/usr/bin/chromium"  # the browser axe-core runs in (Debian's; never a download)
    tools_dir: str = ""  # the npm packages (axe-core, caniemail); default: tools/ of the Retain checkout
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_private_key_path: str = ""

    @property
    def var_path(self) -> Path:
        return Path(self.var_dir)

    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{Path(self.var_dir) / 'retain.db'}"

    def resolved_sender(self) -> str:
        return self.sender or f"outbox://{Path(self.var_dir) / 'outbox'}"

    def resolved_model_path(self) -> Path:
        return Path(self.model_path) if self.model_path else Path(self.var_dir) / "model" / "retain-model"

    def resolved_secret_key(self) -> bytes:
        """The signing key; generated once (atomically) into ``<var_dir>/secret.key`` when not configured.

        ConfigError when the key file is empty or short (campaigns/keys.py)."""
        from campaigns.keys import signing_key

        return signing_key(self)

    def verification_keys(self) -> tuple[bytes, ...]:
        """Every key a link may be signed with: the current one, then rotated keys still kept."""
        from campaigns.keys import verification_keys

        return verification_keys(self)

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.shop_timezone)

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with some fields changed (``None`` values are ignored)."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def public_dict(self) -> dict[str, Any]:
        """Settings for display, secrets masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = "***" if (f.name in _SECRETS and value) else value
        return out


_SECRETS = {"smtp_password", "secret_key", "preview_password"}


def _cast(name: str, raw: Any, target: Any, source: str) -> Any:
    """Cast ``raw`` to the field's type, or raise ConfigError naming the setting and source."""
    try:
        if target is bool or target == "bool":
            if isinstance(raw, bool):
                return raw
            text = str(raw).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if target is int or target == "int":
            if isinstance(raw, bool):
                raise ValueError(raw)
            return int(raw)
        if target is float or target == "float":
            if isinstance(raw, bool):
                raise ValueError(raw)
            return float(raw)
        if not isinstance(raw, str):
            raise ValueError(raw)
        return raw
    except (TypeError, ValueError):
        shown = "(hidden: a secret)" if name in _SECRETS else repr(raw)
        raise ConfigError(f"{source}: setting {name!r} must be {target}, got {shown}") from None


def _flatten(table: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value))
        else:
            flat[key] = value
    return flat


def config_path(
    config_file: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """The retain.toml in use: ``config_file``, else ``$RETAIN_CONFIG``, else ``./retain.toml``."""
    env = os.environ if env is None else env
    explicit = config_file or env.get(f"{ENV_PREFIX}CONFIG")
    return Path(explicit) if explicit else Path(DEFAULT_CONFIG_FILE)


def load_settings(
    config_file: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings: ``overrides`` (CLI flags), then environment, then ``retain.toml``, then defaults.

    ``config_file`` defaults to ``$RETAIN_CONFIG`` or ``./retain.toml`` (absent is fine unless named
    explicitly). Raises ConfigError for unknown keys, wrong types, an unknown timezone or bad shares.
    """
    env = os.environ if env is None else env
    known = {f.name: f.type for f in fields(Settings)}
    values: dict[str, Any] = {}

    explicit = config_file or env.get(f"{ENV_PREFIX}CONFIG")
    path = config_path(config_file, env)
    if explicit and not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if path.exists():
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        for key, raw in _flatten(data).items():
            if key not in known:
                raise ConfigError(f"{path}: unknown setting {key!r} (known: {', '.join(sorted(known))})")
            values[key] = _cast(key, raw, known[key], str(path))

    for name, typ in known.items():
        env_name = ENV_PREFIX + name.upper()
        if env_name in env:
            values[name] = _cast(name, env[env_name], typ, f"environment variable {env_name}")

    for name, raw in overrides.items():
        if raw is None:
            continue
        if name not in known:
            raise ConfigError(f"unknown setting {name!r}")
        values[name] = _cast(name, raw, known[name], f"option --{name.replace('_', '-')}")

    settings = Settings(**values)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    try:
        ZoneInfo(s.shop_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"setting 'shop_timezone': unknown timezone {s.shop_timezone!r}") from None
    if not 0.0 <= s.holdout_share < 1.0:
        raise ConfigError(f"setting 'holdout_share' must be in [0, 1), got {s.holdout_share}")
    if s.dispatcher not in {"local", "celery"} and not re.match(
        r"^[A-Za-z_][\w.]*[.:][A-Za-z_]\w*$", s.dispatcher
    ):
        raise ConfigError(
            f"setting 'dispatcher' must be 'local', 'celery' or a dotted path, got {s.dispatcher!r}"
        )
    if s.quiet_hours:
        parts = s.quiet_hours.split("-")
        ok = len(parts) == 2 and all(p.strip().isdigit() and 0 <= int(p) <= 23 for p in parts)
        if not ok:
            raise ConfigError(
                f"setting 'quiet_hours' must look like '21-8' (local hours), got {s.quiet_hours!r}"
            )
    if not LOCALE_RE.match(s.locale):
        raise ConfigError(
            f"setting 'locale' must be a language tag such as 'en', 'en-GB' or 'ar', got {s.locale!r}"
        )
    try:
        datetime.fromisoformat(s.import_earliest_date)
    except ValueError:
        raise ConfigError(
            f"setting 'import_earliest_date' must be an ISO date such as 1970-01-01, got {s.import_earliest_date!r}"
        ) from None
    if s.import_max_days_ahead < 0 or s.rotated_key_days < 0:
        raise ConfigError("settings 'import_max_days_ahead' and 'rotated_key_days' must be 0 or more")
    for name in ("batch_size", "send_concurrency", "max_email_kb"):
        if getattr(s, name) < 1:
            raise ConfigError(f"setting {name!r} must be at least 1")


def settings_to_env(settings: Settings) -> dict[str, str]:
    """Every setting as the ``RETAIN_*`` variable :func:`load_settings` reads back (for child processes)."""
    env: dict[str, str] = {}
    for f in fields(Settings):
        value = getattr(settings, f.name)
        env[ENV_PREFIX + f.name.upper()] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def require_services() -> bool:
    """True when tests must fail rather than skip if a server is absent (CI sets RETAIN_REQUIRE_SERVICES=1)."""
    return os.environ.get("RETAIN_REQUIRE_SERVICES", "") not in {"", "0", "false", "no"}


def set_thread_env() -> None:
    """Called by entry points: implicit asks for single-threaded OpenBLAS."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


def postgres_test_url() -> str:
    """PostgreSQL URL for the test suite (``RETAIN_TEST_POSTGRES_URL``)."""
    return os.environ.get("RETAIN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
