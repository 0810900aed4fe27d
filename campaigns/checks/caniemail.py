"""The email's HTML and CSS features against the Can I Email support data, for the clients that matter.

Node runs ``tools/caniemail-check.mjs``, which feeds the HTML to the ``caniemail`` npm package
(MIT licence, © Avi Goldman and Andrew Powell; data from caniemail.com; see tools/THIRD_PARTY.md) and
returns each feature a client does not support (``none``) or supports in part (``partial``).

A feature a listed client does not support fails the check unless it is in :data:`DEGRADES`: features
that Retain's emails use only as enhancements, so that a client without them still shows the layout
(MJML writes the layout as inline styles and tables, with Outlook's ghost tables; ``<style>`` carries
the responsive, dark-mode and hover extras). Each comes with what the reader of that client sees
instead. ``partial`` support is listed, never failed.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from campaigns.checks.model import FAIL, CheckResult, Finding
from campaigns.checks.tools import Toolbox

TIMEOUT_SECONDS = 60

#: clients of the ``check_clients`` setting, by name, for messages
CLIENT_NAMES = {
    "apple-mail.macos": "Apple Mail (macOS)",
    "apple-mail.ios": "Apple Mail (iOS)",
    "gmail.desktop-webmail": "Gmail (web)",
    "gmail.ios": "Gmail (iOS app)",
    "gmail.android": "Gmail (Android app)",
    "gmail.mobile-webmail": "Gmail (mobile web)",
    "outlook.windows": "Outlook (Windows desktop)",
    "outlook.windows-mail": "Windows Mail",
    "outlook.macos": "Outlook (Mac)",
    "outlook.outlook-com": "Outlook.com / new Outlook",
    "outlook.ios": "Outlook (iOS)",
    "outlook.android": "Outlook (Android)",
    "yahoo.desktop-webmail": "Yahoo (web)",
    "yahoo.ios": "Yahoo (iOS)",
    "yahoo.android": "Yahoo (Android)",
}

#: unsupported features that do not break the layout, and what the reader sees instead
DEGRADES = {
    "@media": "the desktop layout (Outlook's ghost tables keep the columns side by side)",
    "prefers-color-scheme": "the light email (the client may darken it itself)",
    "color-scheme CSS property": "the light email (the client may darken it itself)",
    "color-scheme meta tag": "the light email (the client may darken it itself)",
    "border-radius": "square corners",
    "opacity": "nothing: the hidden preheader is also display:none / mso-hide:all",
    "display:none": "nothing: the hidden preheader is also mso-hide:all in Outlook",
    "max-height property": "nothing: only the hidden preheader uses it",
    "overflow": "nothing: only the hidden preheader uses it",
    "cursor": "the default mouse pointer",
    "outline": "no outline on focused images",
    "word-spacing": "default word spacing",
    "word-break": "long words wrap where the client wraps them",
    "white-space": "a quantity or price may wrap onto two lines",
    "letter-spacing": "default letter spacing in small headings",
    "text-transform": "the heading in the case it was written",
    "target attribute": "links open in a new window anyway",
    "aria-label attribute": "screen readers read the visible text instead",
    "aria-hidden attribute": "screen readers also read the decorative star",
    "role attribute": "screen readers may announce layout tables",
    "lang attribute": "the reader's default language for speech",
    "dir attribute": "the direction of the client",
    "<body> element": "the same page background, from the wrapper around the email",
    "height property": "product tiles at least, not exactly, their height",
    "table-layout": "automatic table layout",
    "border-spacing": "rating buttons without gaps",
    "Chaining selectors": "only dark-mode and Firefox rules use them: the light email",
    "Attribute selectors": "only dark-mode rules use them: the light email",
    "Descendant combinator": "only responsive and dark-mode rules use it",
    "Class selector": "only responsive and dark-mode rules use it",
    "Type selector": "only reset and dark-mode rules use it",
    "ID selector": "only Outlook's reset uses it",
    ":root pseudo-class": "the light email",
    "!important keyword": "only responsive and dark-mode rules use it",
    "text-decoration": "underlines as the client draws them",
}


def parse_clients(setting: str) -> list[str]:
    return [c.strip() for c in setting.split(",") if c.strip()]


def run_caniemail(html: str, clients: list[str], tools: Toolbox) -> list[dict[str, Any]]:
    """The raw findings: ``[{"feature", "support", "clients", "notes"}]``. Raises RuntimeError."""
    assert tools.node is not None
    proc = subprocess.run(
        [tools.node, str(tools.caniemail_script)],
        input=json.dumps({"html": html, "clients": clients}).encode(),
        capture_output=True,
        timeout=TIMEOUT_SECONDS,
        cwd=str(tools.tools_dir),
        check=False,
    )
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-2:]
        raise RuntimeError(f"caniemail exited {proc.returncode}: {' / '.join(detail)}")
    found: list[dict[str, Any]] = json.loads(proc.stdout)
    return found


def caniemail_check(html: str, clients: list[str], tools: Toolbox) -> CheckResult:
    missing = tools.caniemail_missing
    if missing:
        return CheckResult.skipped("caniemail", missing)
    try:
        found = run_caniemail(html, clients, tools)
    except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as exc:
        return CheckResult("caniemail", "warn", f"Can I Email could not check the email: {exc}")
    findings: list[Finding] = []
    unsupported, partial = [], []
    for entry in sorted(found, key=lambda e: (e["support"], e["feature"])):
        names = ", ".join(CLIENT_NAMES.get(c, c) for c in entry["clients"])
        row = {
            "feature": entry["feature"],
            "support": entry["support"],
            "clients": entry["clients"],
            "notes": entry["notes"][:3],
        }
        if entry["support"] == "none":
            instead = DEGRADES.get(entry["feature"])
            row["degrades_to"] = instead
            unsupported.append(row)
            if instead is None:
                findings.append(
                    Finding(FAIL, f"{entry['feature']} is not supported and may break the layout", names)
                )
        else:
            partial.append(row)
    graceful = sum(1 for u in unsupported if u["degrades_to"])
    summary = (
        f"{len(clients)} client{'s' if len(clients) != 1 else ''}: "
        f"{len(unsupported) - graceful} unsupported feature(s) that may break the layout, "
        f"{graceful} that degrade gracefully, {len(partial)} partly supported"
    )
    return CheckResult.of("caniemail", summary, findings, unsupported=unsupported, partial=partial)
