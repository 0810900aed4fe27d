"""The email in a real browser: axe-core accessibility rules and the layout, in Debian's Chromium.

Playwright drives the Chromium at the ``chromium_path`` setting (never a downloaded browser). The
email is loaded as a page of its own; no request leaves the machine: images are answered with a grey
placeholder of the box the email gives them, anything else is refused.

**accessibility** axe-core (the npm package under ``tools/``) with the WCAG 2.x A and AA rules, at
375 px and 600 px wide in light mode and at 375 px in dark mode (colour contrast of the dark-mode
styles). A serious or critical violation fails; a moderate or minor one warns.

**layout** at 375 px (the first screen of a small phone is 375 x 667) and at 600 px: the page must not
scroll sideways (fail, naming the widest elements); the main call to action (the element with class
``cta``, which partials/button.mjml sets) should start inside the first mobile screen (warn otherwise,
or when no element is marked).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from types import TracebackType
from typing import Any

from campaigns.checks.model import FAIL, WARN, CheckResult, Finding
from campaigns.checks.tools import Toolbox

MOBILE = (375, 667)
DESKTOP = (600, 900)
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
FAILING_IMPACTS = ("serious", "critical")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PAGE_TIMEOUT_MS = 30_000

_AXE_RUN = """async ([tags, rules]) => {
  const options = {resultTypes: ['violations']};
  if (rules) options.runOnly = {type: 'rule', values: rules}; else options.runOnly = {type: 'tag', values: tags};
  const result = await axe.run(document, options);
  return result.violations.map(v => ({
    id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl, count: v.nodes.length,
    nodes: v.nodes.slice(0, 5).map(n => ({target: n.target.join(' '), summary: n.failureSummary || '',
                                          html: n.html.slice(0, 240)})),
  }));
}"""

_LAYOUT = """() => {
  const width = window.innerWidth;
  const root = document.documentElement;
  const describe = (e) => e.tagName.toLowerCase() + (e.className && typeof e.className === 'string'
      ? '.' + e.className.trim().split(/\\s+/).join('.') : '') + ' "' + (e.textContent || '').trim().slice(0, 40) + '"';
  const wide = [];
  for (const e of document.body.querySelectorAll('*')) {
    const r = e.getBoundingClientRect();
    if (r.width > 0 && r.right > width + 1) { wide.push(describe(e) + ' ' + Math.round(r.right) + 'px'); }
    if (wide.length >= 3) break;
  }
  const cta = document.querySelector('.cta');
  const box = cta ? cta.getBoundingClientRect() : null;
  return {scrollWidth: root.scrollWidth, width, height: root.scrollHeight, wide,
          cta: box ? {top: Math.round(box.top + window.scrollY), bottom: Math.round(box.bottom + window.scrollY)} : null};
}"""


def placeholder_png() -> bytes:
    """A 1 x 1 light grey PNG (the browser scales it to the image's box)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xd9\xd6\xd0"))
        + chunk(b"IEND", b"")
    )


class BrowserSession:
    """One Chromium for many emails (launching it costs about a second). Use as a context manager, in
    the thread that made it (Playwright's sync API)."""

    def __init__(self, tools: Toolbox) -> None:
        self.tools = tools
        self._playwright: Any = None
        self._browser: Any = None
        self._axe = tools.axe_script.read_text(encoding="utf-8") if tools.axe_script.exists() else None
        self._png = placeholder_png()

    def __enter__(self) -> BrowserSession:
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=str(self.tools.chromium), args=CHROMIUM_ARGS
            )
        except Exception:
            self._playwright.stop()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self._browser is not None:
                self._browser.close()
        finally:
            if self._playwright is not None:
                self._playwright.stop()

    def _route(self, route: Any) -> None:
        if route.request.resource_type == "image":
            route.fulfill(status=200, content_type="image/png", body=self._png)
        else:
            route.abort()

    def _page(self, html: str, size: tuple[int, int], dark: bool) -> Any:
        page = self._browser.new_page(viewport={"width": size[0], "height": size[1]})
        page.set_default_timeout(PAGE_TIMEOUT_MS)
        page.route("**/*", self._route)
        page.emulate_media(color_scheme="dark" if dark else "light")
        page.set_content(html, wait_until="load")
        return page

    def inspect(
        self, html: str, *, name: str = "email", screenshots: Path | None = None
    ) -> tuple[CheckResult, CheckResult]:
        """(accessibility, layout) for one email; screenshots ``name-375.png`` ... under ``screenshots``."""
        views: list[dict[str, Any]] = []
        layouts: dict[int, dict[str, Any]] = {}
        for size, dark in ((MOBILE, False), (DESKTOP, False), (MOBILE, True)):
            page = self._page(html, size, dark)
            try:
                label = f"{size[0]}px" + (" dark" if dark else "")
                if not dark:
                    layouts[size[0]] = page.evaluate(_LAYOUT)
                if self._axe is not None:
                    page.add_script_tag(content=self._axe)
                    rules = ["color-contrast"] if dark else None
                    views.append({"view": label, "violations": page.evaluate(_AXE_RUN, [AXE_TAGS, rules])})
                if screenshots is not None:
                    screenshots.mkdir(parents=True, exist_ok=True)
                    suffix = f"{size[0]}" + ("-dark" if dark else "")
                    page.screenshot(path=str(screenshots / f"{name}-{suffix}.png"), full_page=True)
            finally:
                page.close()
        return self._accessibility(views), self._layout(layouts)

    def _accessibility(self, views: list[dict[str, Any]]) -> CheckResult:
        if self._axe is None:
            return CheckResult.skipped("accessibility", self.tools.axe_missing or "axe-core is not installed")
        findings: list[Finding] = []
        seen: set[tuple[str, str]] = set()
        for view in views:
            for v in view["violations"]:
                severity = FAIL if v["impact"] in FAILING_IMPACTS else WARN
                key = (v["id"], v["nodes"][0]["target"] if v["nodes"] else "")
                if key in seen:
                    continue
                seen.add(key)
                where = "; ".join(n["target"] for n in v["nodes"][:3])
                findings.append(
                    Finding(
                        severity,
                        f"{v['impact']}: {v['help']} ({v['id']}, {v['count']}x, {view['view']})",
                        where,
                    )
                )
        serious = sum(1 for f in findings if f.severity == FAIL)
        summary = (
            f"axe-core {', '.join(v['view'] for v in views)}: {serious} serious or critical violation(s)"
        )
        return CheckResult.of("accessibility", summary, findings, views=views)

    @staticmethod
    def _layout(layouts: dict[int, dict[str, Any]]) -> CheckResult:
        findings: list[Finding] = []
        for width, found in sorted(layouts.items()):
            if found["scrollWidth"] > width + 1:
                findings.append(
                    Finding(
                        FAIL,
                        f"scrolls sideways at {width} px (content {found['scrollWidth']} px wide)",
                        "; ".join(found["wide"]),
                    )
                )
        mobile = layouts.get(MOBILE[0])
        if mobile is not None:
            cta = mobile["cta"]
            if cta is None:
                findings.append(
                    Finding(
                        WARN, 'no main call to action marked (css-class="cta", as partials/button.mjml sets)'
                    )
                )
            elif cta["top"] >= MOBILE[1]:
                findings.append(
                    Finding(
                        WARN,
                        f"the main call to action starts {cta['top']} px down, below the first mobile screen "
                        f"({MOBILE[1]} px)",
                    )
                )
        cta_top = mobile["cta"]["top"] if mobile and mobile["cta"] else None
        summary = "no sideways scrolling at " + " and ".join(f"{w} px" for w in sorted(layouts))
        if any(f.severity == FAIL for f in findings):
            summary = "scrolls sideways"
        if cta_top is not None:
            summary += f"; call to action {cta_top} px down on a phone"
        return CheckResult.of("layout", summary, findings, views=layouts)
