"""``retain init DIR``: a new shop's own folder, so the demo's settings never apply to a real database.

The folder gets its own ``retain.toml`` (the real clock — no ``as_of``; paths into the folder; the
currency left to the first import, which writes it), its own ``templates/`` with the starter campaigns
copied as ``enabled: false`` (nothing is scheduled or sent until the shop turns a campaign on), its own
``segments.yaml`` and ``var/`` with a freshly generated signing key.

The checkout's own ``retain.toml`` declares ``demo_database``: used with any other database, Retain warns
that the demo's settings (``as_of = "latest-order"``, GBP, the demo shop) are being applied, and the
go-live checks fail until the shop has its own configuration.
"""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

from campaigns.errors import ConfigError

CHECKOUT = Path(__file__).resolve().parent.parent
#: the line `retain init` writes in place of a currency; the first import replaces it
CURRENCY_MARKER = "# currency: set by your first import"
_FRONT = re.compile(r"\A---[ \t]*\r?\n")
_ENABLED = re.compile(r"^enabled:.*$", re.MULTILINE)


def disable(text: str) -> str:
    """A campaign file's text with ``enabled: false`` in its front matter."""
    if not _FRONT.match(text):
        return text
    head, sep, rest = text.partition("\n---")
    if _ENABLED.search(head):
        head = _ENABLED.sub("enabled: false", head)
    else:
        head += "\nenabled: false"
    return head + sep + rest


def toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(folder: Path, name: str) -> str:
    return f"""# Retain settings for {name}, made by `retain init` on {datetime.now(UTC):%Y-%m-%d}.
# Run retain from this folder, or pass --config {folder / "retain.toml"}.
# Environment variables RETAIN_<NAME> override these; every setting: docs/configuration.md.
# The real clock is used (no as_of): segments and schedules see today.
var_dir = {toml_string(str(folder / "var"))}
templates_dir = {toml_string(str(folder / "templates"))}
segments_file = {toml_string(str(folder / "segments.yaml"))}
{CURRENCY_MARKER}

[shop]
shop_name = {toml_string(name)}
# Required before a real send (`retain doctor` checks them):
# shop_address = "your postal address, shown in every email's footer"
# shop_url = "https://your-shop.example"
# from_address = "{name} <hello@your-shop.example>"
# public_url = "https://links.your-shop.example"   # where `retain serve` is reachable, https
# send_rate = 10                                   # messages per second your mail provider allows
"""


def init_shop(folder: Path, name: str | None = None) -> list[str]:
    """Create the shop folder; returns the campaign names copied (all disabled)."""
    folder = folder.resolve()
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError(f"{folder} exists and is not an empty folder: choose a new folder for the shop")
    shop = name or folder.name
    folder.mkdir(parents=True, exist_ok=True)
    source = CHECKOUT / "templates"
    shutil.copytree(source, folder / "templates")
    copied = []
    for path in sorted((folder / "templates" / "emails").glob("*.mjml")):
        path.write_text(disable(path.read_text(encoding="utf-8")), encoding="utf-8")
        copied.append(path.stem)
    shutil.copyfile(CHECKOUT / "segments.yaml", folder / "segments.yaml")
    (folder / "retain.toml").write_text(config_text(folder, shop), encoding="utf-8")
    from campaigns.keys import ensure_key_file

    ensure_key_file(folder / "var")
    return copied


def adopt_currency(config: Path, currency: str | None, source: str) -> bool:
    """Replace the init marker in ``config`` with ``currency`` (the first import's); True when written."""
    if not currency or not config.exists():
        return False
    text = config.read_text(encoding="utf-8")
    if CURRENCY_MARKER not in text:
        return False
    line = f"currency = {toml_string(currency)}  # from the first import ({Path(source).name})"
    config.write_text(text.replace(CURRENCY_MARKER, line, 1), encoding="utf-8")
    return True


def currency_pending(config: Path) -> bool:
    """True while the shop made by `retain init` has no currency yet."""
    try:
        return CURRENCY_MARKER in config.read_text(encoding="utf-8")
    except OSError:
        return False
