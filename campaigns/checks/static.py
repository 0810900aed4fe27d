"""Checks that read the HTML alone: size against Gmail's clip, links, images.

**size** Gmail shows "[Message clipped]" once the HTML passes about 102 KB (102 x 1,024 bytes of the
decoded HTML) and hides the rest, the unsubscribe footer included: fail above ``max_email_kb`` (which
is what `retain send` refuses) or the clip, warn above 80 % of it.

**links** every ``<a href>``: plain ``http://`` fails (mail clients and browsers warn, and a tracking
proxy can read it), a loopback address (127.0.0.0/8, ::1, localhost) fails (it only works on the
sender's machine), a link to the shop without ``utm_source``/``utm_medium``/``utm_campaign`` warns
(analytics cannot attribute the visit). Links built from the ``public_url`` setting (unsubscribe,
feedback) warn instead, naming the setting: it is configuration, not the template. No unsubscribe
link at all fails.

**images** every ``<img>``: ``src`` must be https (``http:`` fails; ``data:`` fails, Gmail blocks it
and it counts towards the clip), it must have an ``alt`` attribute (``alt=""`` marks decoration; a
linked image with empty alt leaves the link without a name: fail), and it should declare a ``width``
of at most 600 px (a missing or wider one warns: the layout jumps or overflows while it loads).
"""

from __future__ import annotations

import ipaddress
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlsplit

from campaigns.checks.model import FAIL, WARN, CheckResult, Finding
from campaigns.config import Settings

#: Gmail clips the HTML part beyond this many bytes
GMAIL_CLIP_BYTES = 102 * 1024
UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign")
MAX_IMAGE_WIDTH = 600


class _Scanner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images: list[tuple[dict[str, str | None], bool]] = []  # (attributes, inside a link)
        self._open_links = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a":
            self._open_links += 1
            href = (values.get("href") or "").strip()
            if href:
                self.links.append(href)
        elif tag == "img":
            self.images.append((values, self._open_links > 0))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open_links:
            self._open_links -= 1


def scan(html: str) -> _Scanner:
    scanner = _Scanner()
    scanner.feed(html)
    scanner.close()
    return scanner


def short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def size_check(html: str, settings: Settings) -> CheckResult:
    size = len(html.encode("utf-8"))
    limit = min(settings.max_email_kb * 1024, GMAIL_CLIP_BYTES)
    findings = []
    if size > limit:
        findings.append(
            Finding(
                FAIL,
                f"HTML is {size / 1024:.1f} KB, above {limit / 1024:.0f} KB: Gmail clips it (hiding the "
                "footer and unsubscribe link) and `retain send` refuses it",
            )
        )
    elif size > 0.8 * limit:
        findings.append(
            Finding(WARN, f"HTML is {size / 1024:.1f} KB, close to the {limit / 1024:.0f} KB limit")
        )
    return CheckResult.of(
        "size",
        f"{size / 1024:.1f} KB of HTML (Gmail clips above 102 KB)",
        findings,
        html_bytes=size,
        limit_bytes=limit,
    )


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def links_check(html: str, settings: Settings, unsubscribe_url: str | None = None) -> CheckResult:
    links = list(dict.fromkeys(scan(html).links))
    public = settings.public_url.rstrip("/") + "/"
    shop_host = (urlsplit(settings.shop_url).hostname or "").lower()
    findings: list[Finding] = []
    web = 0
    for href in links:
        lower = href.lower()
        if lower.startswith(("mailto:", "tel:", "#", "sms:")):
            continue
        parts = urlsplit(href)
        if parts.scheme not in ("http", "https"):
            findings.append(Finding(FAIL, f"link with scheme {parts.scheme or '(none)'!r}", short(href)))
            continue
        web += 1
        configured = href.startswith(public)
        host = parts.hostname or ""
        if configured and (parts.scheme == "http" or is_loopback(host)):
            continue  # reported once below, as the setting
        if is_loopback(host):
            findings.append(
                Finding(FAIL, "link to a loopback address (works only on this machine)", short(href))
            )
        elif parts.scheme == "http":
            findings.append(Finding(FAIL, "link without https", short(href)))
        if not configured and host.lower() == shop_host:
            present = {k for k, _ in parse_qsl(parts.query, keep_blank_values=True)}
            missing = [k for k in UTM_KEYS if k not in present]
            if missing:
                findings.append(Finding(WARN, f"shop link without {', '.join(missing)}", short(href)))
    public_host = urlsplit(settings.public_url).hostname or ""
    if any(h.startswith(public) for h in links) and (
        settings.public_url.startswith("http://") or is_loopback(public_host)
    ):
        findings.append(
            Finding(
                WARN,
                f"unsubscribe and feedback links use the public_url setting {settings.public_url!r}: set it to "
                "the https address where `retain serve` is reachable before sending",
                "setting public_url",
            )
        )
    if unsubscribe_url is not None and unsubscribe_url not in links:
        findings.append(Finding(FAIL, "no unsubscribe link (extend layouts/base.mjml)"))
    return CheckResult.of("links", f"{web} web link{'s' if web != 1 else ''}", findings, links=len(links))


def images_check(html: str) -> CheckResult:
    images = scan(html).images
    findings: list[Finding] = []
    seen: set[str] = set()
    for attrs, linked in images:
        src = (attrs.get("src") or "").strip()
        if src in seen:
            continue
        seen.add(src)
        where = short(src) if src else "(no src)"
        scheme = urlsplit(src).scheme.lower()
        if scheme == "data":
            findings.append(
                Finding(FAIL, "inline data: image (Gmail blocks it; it counts towards the clip)", where[:40])
            )
        elif scheme == "http":
            findings.append(Finding(FAIL, "image without https", where))
        elif scheme not in ("https", "cid"):
            findings.append(Finding(FAIL, "image without an absolute https address", where))
        alt = attrs.get("alt")
        if alt is None:
            findings.append(Finding(FAIL, 'image without alt text (use alt="" for decoration)', where))
        elif not alt.strip() and linked:
            findings.append(Finding(FAIL, "linked image with empty alt: the link has no name", where))
        width = (attrs.get("width") or "").strip().removesuffix("px")
        if not width.isdigit():
            findings.append(
                Finding(WARN, "image without a width attribute (the layout jumps while it loads)", where)
            )
        elif int(width) > MAX_IMAGE_WIDTH:
            findings.append(
                Finding(WARN, f"image {width} px wide, wider than the {MAX_IMAGE_WIDTH} px email", where)
            )
    count = len(seen)
    return CheckResult.of("images", f"{count} image{'s' if count != 1 else ''}", findings, images=count)
