"""HTML email -> a plain-text alternative that reads well.

Used when a campaign has no ``.txt`` template beside its ``.mjml``. Rules: no markup; the hidden
preheader and anything else styled ``display:none`` is dropped; ``<head>``, ``<style>``,
``<script>`` and MSO conditional comments are dropped; links become ``text (url)`` (just the URL
when the text is the URL); images contribute nothing (their alt text is decoration in a card);
blocks become lines, with at most one blank line between paragraphs.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK = {
    "p",
    "div",
    "tr",
    "table",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "li",
    "ul",
    "ol",
    "section",
    "center",
}
_SKIP = {"head", "style", "script", "title"}
_VOID = {"br", "img", "hr", "meta", "link", "input", "col", "area", "base", "wbr", "source"}
_HIDDEN_RE = re.compile(r"display\s*:\s*none", re.I)
_SPACES_RE = re.compile(r"[ \t\f\v\u00a0]+")
_BLANKS_RE = re.compile(r"\n\s*\n(\s*\n)+")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.stack: list[tuple[str, bool]] = []  # (tag, hides its content)
        self.hidden = 0
        self.links: list[tuple[str, int]] = []  # (href, index in parts where its text starts)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            if tag == "br" and not self.hidden:
                self.parts.append("\n")
            return
        attr = dict(attrs)
        hides = tag in _SKIP or bool(_HIDDEN_RE.search(attr.get("style") or ""))
        self.stack.append((tag, hides))
        if hides:
            self.hidden += 1
        if self.hidden:
            return
        if tag in _BLOCK:
            self.parts.append("\n")
        if tag == "a":
            self.links.append((attr.get("href") or "", len(self.parts)))

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        while self.stack:
            open_tag, hides = self.stack.pop()
            if hides:
                self.hidden -= 1
            elif not self.hidden:
                self._close(open_tag)
            if open_tag == tag:
                break

    def _close(self, tag: str) -> None:
        if tag == "a" and self.links:
            href, start = self.links.pop()
            text = " ".join("".join(self.parts[start:]).split())
            if href and not href.startswith(("#", "mailto:")):
                self.parts[start:] = [f"{text} ({href})" if text and text != href else href]
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """A readable plain-text version of an HTML email (see the module docstring)."""
    html = re.sub(r"<!--.*?-->", "", html, flags=re.S)
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [_SPACES_RE.sub(" ", line).strip() for line in "".join(parser.parts).splitlines()]
    text = "\n".join(lines)
    return _BLANKS_RE.sub("\n\n", text).strip() + "\n"
