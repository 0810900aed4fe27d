"""What the preview warns about in a rendered email: Gmail clipping, images without alt, plain-http links.

Gmail shows "[Message clipped]" once the HTML part passes about 102 KB (102 x 1024 bytes of the
decoded HTML); everything after the cut, usually the footer and its unsubscribe link, is hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from html.parser import HTMLParser

#: Gmail clips the HTML part beyond this many bytes
GMAIL_CLIP_BYTES = 102 * 1024


@dataclass(frozen=True, slots=True)
class EmailWarning:
    kind: str  # size | alt | link
    message: str


class _Scanner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images_without_alt: list[str] = []
        self.insecure_links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img" and "alt" not in values:
            self.images_without_alt.append(values.get("src") or "(no src)")
        if tag == "a":
            href = (values.get("href") or "").strip()
            if href.lower().startswith("http://"):
                self.insecure_links.append(href)


def email_warnings(html: str) -> list[EmailWarning]:
    """Warnings for one rendered HTML body (empty when all is well).

    - ``size``: the HTML is over :data:`GMAIL_CLIP_BYTES` (Gmail clips it);
    - ``alt``: an ``<img>`` has no ``alt`` attribute (``alt=""`` marks a decorative image and is fine);
    - ``link``: an ``<a href>`` uses plain ``http://``.
    """
    out: list[EmailWarning] = []
    size = len(html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        out.append(
            EmailWarning(
                "size",
                f"HTML is {size / 1024:.1f} kB: Gmail clips messages over 102 kB "
                "(the footer and unsubscribe link would be hidden)",
            )
        )
    scanner = _Scanner()
    scanner.feed(html)
    scanner.close()
    for src in _unique(scanner.images_without_alt):
        out.append(EmailWarning("alt", f"image without alt text: {_short(src)}"))
    for href in _unique(scanner.insecure_links):
        out.append(EmailWarning("link", f"link without https: {_short(href)}"))
    return out


def _unique(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _short(text: str, limit: int = 90) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
