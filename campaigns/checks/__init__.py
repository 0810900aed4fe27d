"""Is an email inbox-ready? The checks behind `retain check`, `retain lint` and the preview (docs/checks.md).

They run on what :class:`campaigns.factory.EmailFactory` builds — the rendered HTML and the wire
message — never on a second rendering of their own::

    with EmailChecker(settings) as checker:
        report = checker.check(prepared, source="preview fixture")
        report.status        # pass | warn | fail
        report.problems()    # the failing findings, one line each

==============  =====================================================  ==========================
check           what                                                   needs
==============  =====================================================  ==========================
size            HTML against Gmail's clip and ``max_email_kb``          -
links           https, UTM on shop links, no loopback, unsubscribe     -
images          https, alt text, declared width                        -
caniemail       features against Can I Email for ``check_clients``     Node + ``make tools``
accessibility   axe-core WCAG A/AA at 375/600 px and in dark mode      Chromium + ``make tools``
layout          no sideways scrolling; call to action on screen one    Chromium
spam            ``spamassassin -L`` score, setup rules discounted      SpamAssassin
==============  =====================================================  ==========================

A check whose tool is missing is ``skipped`` with the reason (and how to install it).
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Any

from campaigns.checks.browser import BrowserSession
from campaigns.checks.caniemail import caniemail_check, parse_clients
from campaigns.checks.model import FAIL, PASS, SKIPPED, WARN, CheckResult, EmailReport, Finding
from campaigns.checks.spam import spam_check
from campaigns.checks.static import GMAIL_CLIP_BYTES, images_check, links_check, size_check
from campaigns.checks.tools import Toolbox
from campaigns.config import Settings

CHECK_NAMES = ("size", "links", "images", "caniemail", "accessibility", "layout", "spam")
#: the checks that start a program (Chromium, Node, SpamAssassin); `lint --quick` and the preview's
#: campaign list leave them out
TOOL_CHECKS = ("caniemail", "accessibility", "layout", "spam")


def static_checks(html: str, settings: Settings, unsubscribe_url: str | None = None) -> list[CheckResult]:
    """size, links, images: pure Python, milliseconds."""
    return [size_check(html, settings), links_check(html, settings, unsubscribe_url), images_check(html)]


class EmailChecker:
    """Runs the checks on emails the factory built; one Chromium for all of them (started on first use).

    ``only``: the names of the checks to run (default all); ``screenshots``: a directory for the
    browser's screenshots.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        only: tuple[str, ...] = CHECK_NAMES,
        screenshots: Path | None = None,
        tools: Toolbox | None = None,
    ) -> None:
        unknown = set(only) - set(CHECK_NAMES)
        if unknown:
            raise ValueError(f"unknown check(s) {sorted(unknown)} (known: {', '.join(CHECK_NAMES)})")
        self.settings = settings
        self.only = only
        self.screenshots = screenshots
        self.tools = tools or Toolbox.detect(settings)
        self.clients = parse_clients(settings.check_clients)
        self._browser: BrowserSession | None = None
        self._browser_error: str | None = None

    def __enter__(self) -> EmailChecker:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._browser is not None:
            browser, self._browser = self._browser, None
            browser.__exit__(None, None, None)

    def _session(self) -> BrowserSession | None:
        if self._browser is None and self._browser_error is None:
            missing = self.tools.browser_missing
            if missing:
                self._browser_error = missing
                return None
            try:
                self._browser = BrowserSession(self.tools).__enter__()
            except Exception as exc:  # noqa: BLE001 - a browser that will not start is a skipped check
                self._browser_error = f"Chromium did not start: {exc}"
        return self._browser

    def check(self, prepared: Any, *, source: str, name: str | None = None) -> EmailReport:
        """Every selected check of one :class:`campaigns.factory.Prepared` email."""
        rendered = prepared.rendered
        wire = prepared.email.data if prepared.email is not None else None
        return self.check_parts(
            campaign=str(prepared.context["campaign"]["name"]),
            subject=rendered.subject,
            html=rendered.html,
            wire=wire,
            unsubscribe_url=str(prepared.context.get("unsubscribe_url") or "") or None,
            source=source,
            name=name,
        )

    def check_parts(
        self,
        *,
        campaign: str,
        subject: str,
        html: str,
        wire: bytes | None,
        unsubscribe_url: str | None,
        source: str,
        name: str | None = None,
    ) -> EmailReport:
        results = [r for r in static_checks(html, self.settings, unsubscribe_url) if r.name in self.only]
        if "caniemail" in self.only:
            results.append(caniemail_check(html, self.clients, self.tools))
        if "accessibility" in self.only or "layout" in self.only:
            results += self._browser_checks(html, name or campaign)
        if "spam" in self.only:
            results.append(spam_check(wire, self.tools.spamassassin, self.tools.spam_missing))
        return EmailReport(campaign, source, subject, tuple(results))

    def _browser_checks(self, html: str, name: str) -> list[CheckResult]:
        session = self._session()
        if session is None:
            reason = self._browser_error or "Chromium is not available"
            found = [CheckResult.skipped("accessibility", reason), CheckResult.skipped("layout", reason)]
        else:
            try:
                found = list(session.inspect(html, name=name, screenshots=self.screenshots))
            except Exception as exc:  # noqa: BLE001 - report a broken page load as a warning, not a crash
                message = f"the browser could not load the email: {exc}"
                found = [CheckResult("accessibility", WARN, message), CheckResult("layout", WARN, message)]
        return [r for r in found if r.name in self.only]


__all__ = [
    "CHECK_NAMES",
    "FAIL",
    "GMAIL_CLIP_BYTES",
    "PASS",
    "SKIPPED",
    "TOOL_CHECKS",
    "WARN",
    "CheckResult",
    "EmailChecker",
    "EmailReport",
    "Finding",
    "Toolbox",
    "static_checks",
]
