"""The preview, dashboard and public pages in a real headless Chromium (Debian's /usr/bin/chromium).

One server of each kind runs in a background thread on 127.0.0.1; screenshots go to test-artifacts/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from campaigns.config import require_services
from campaigns.tokens import unsubscribe_url
from campaigns.web.preview_app import create_preview_app
from campaigns.web.public import create_public_app
from campaigns.web.server import ServerThread
from tests.test_web import ROOT, StubRecommender, make_shop

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if require_services():
            pytest.fail(message + " and RETAIN_REQUIRE_SERVICES=1 requires it")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield b
        finally:
            b.close()


def test_preview_pick_customer_mobile_text_live_reload_and_dashboard(browser: Any, tmp_path: Path) -> None:
    store, settings = make_shop(tmp_path)
    app = create_preview_app(
        store, settings, segments_file=ROOT / "segments.yaml", recommender=StubRecommender(store)
    )
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.set_default_timeout(10_000)
    try:
        with ServerThread(app) as url:
            page.goto(url + "/")
            files = list((Path(settings.templates_dir) / "emails").glob("*.mjml"))
            assert page.locator("#campaigns tr[data-campaign]").count() == len(files) >= 4
            page.screenshot(path=str(ARTIFACTS / "preview-index.png"), full_page=True)

            page.click("a[href='/campaigns/weekly-picks']")
            page.fill("#find input[name=q]", "bob@example.test")
            page.click("#find button")
            page.wait_for_selector("text=Bob, new picks for you")
            assert "bob@" not in page.url and "customer=" in page.url
            frame = page.frame_locator("#email")
            assert frame.locator("text=Preview — not sent to bob@example.test").count() == 1

            page.click("#widths button[data-width=mobile]")
            assert page.locator("#email").evaluate("e => e.getBoundingClientRect().width") == 375
            assert "width=mobile" in page.url
            page.wait_for_function("document.getElementById('live').classList.contains('on')")
            page.screenshot(path=str(ARTIFACTS / "preview-mobile.png"), full_page=True)

            page.click("#tabs button[data-tab=text]")
            text = page.locator("#text").inner_text()
            assert "Bob" in text and "Unsubscribe" in text
            page.click("#tabs button[data-tab=html]")

            # save a template: the open page re-renders by itself, keeping mobile width
            template = Path(settings.templates_dir) / "emails" / "weekly-picks.mjml"
            template.write_text(
                template.read_text().replace("new picks for you", "fresh picks, just saved", 1)
            )
            saved = time.monotonic()
            page.wait_for_selector("#subject:has-text('Bob, fresh picks, just saved')", timeout=5_000)
            reload_seconds = time.monotonic() - saved
            assert reload_seconds < 3.0  # the goal is < 1 s; slack for a loaded CI machine
            assert page.locator("#device.mobile").count() == 1

            page.goto(url + "/dashboard")
            for chart in ("retention", "repeat", "aov", "cohorts", "uplift"):
                box = page.locator(f"svg[data-chart={chart}]").bounding_box()
                assert box is not None and box["width"] > 120 and box["height"] > 50
            assert page.locator("svg[data-chart=cohorts] rect[data-cell]").count() == 3
            assert page.locator("svg[data-chart=aov] rect[data-point]").count() == 3
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            page.close()  # drop the live-reload stream before the server stops
    finally:
        if not page.is_closed():
            page.close()
        store.close()


def test_follow_an_unsubscribe_link_and_the_customer_is_suppressed(browser: Any, tmp_path: Path) -> None:
    store, settings = make_shop(tmp_path)
    dee = store.get_customer("dee@example.test")
    assert dee is not None
    page = browser.new_page(viewport={"width": 800, "height": 700})
    page.set_default_timeout(10_000)
    try:
        with ServerThread(create_public_app(store, settings)) as url:
            link = unsubscribe_url(
                url, settings.resolved_secret_key(), customer_id=dee.id, campaign="weekly-picks"
            )
            page.goto(link)
            assert page.locator("#state").inner_text() == "Unsubscribe from our emails?"
            assert not store.is_suppressed("dee@example.test")
            page.screenshot(path=str(ARTIFACTS / "unsubscribe-confirm.png"))
            page.click("#confirm")
            page.wait_for_selector("#state:has-text('You are unsubscribed')")
            page.screenshot(path=str(ARTIFACTS / "unsubscribe-done.png"))
            assert store.is_suppressed("dee@example.test")
            page.close()
    finally:
        if not page.is_closed():
            page.close()
        store.close()


def _no_sideways_scroll(page: Any) -> None:
    width = page.evaluate("window.innerWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= width, page.url


def test_preview_inbox_row_dark_mode_images_off_checks_and_a_390px_phone(
    browser: Any, tmp_path: Path
) -> None:
    store, settings = make_shop(tmp_path)
    app = create_preview_app(
        store, settings, segments_file=ROOT / "segments.yaml", recommender=StubRecommender(store)
    )
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(60_000)
    try:
        with ServerThread(app) as url:
            # the inbox row: sender, subject, preheader snippet
            page.goto(url + "/campaigns/back-in-stock")
            row = page.locator("#inbox-row")
            assert row.locator("#sender").inner_text() == "Retain Demo Shop"
            assert row.locator("#subject").inner_text().endswith("it's back in stock")
            assert row.locator("#preheader").inner_text().startswith("Back in stock:")
            # every check, loaded after the page: with the tools installed, each one ran and passed
            page.wait_for_selector("#check-results")
            statuses = dict(
                page.locator("#check-results > li").evaluate_all(
                    "els => els.map(e => [e.dataset.check, e.dataset.status])"
                )
            )
            assert set(statuses) == {
                "size",
                "links",
                "images",
                "caniemail",
                "accessibility",
                "layout",
                "spam",
            }
            tools_missing = toolbox_missing()
            for name, status in statuses.items():
                assert status == ("skipped" if name in tools_missing else "pass"), (name, status)
            page.screenshot(path=str(ARTIFACTS / "preview-checks.png"), full_page=True)

            # dark mode: the email's own dark styles turn its page background dark
            frame = page.frame_locator("#email")
            light = frame.locator("body").evaluate("b => getComputedStyle(b).backgroundColor")
            page.click("#modes button[data-mode=dark]")
            page.wait_for_function("document.getElementById('email').src.includes('mode=dark')")
            page.wait_for_function(
                "() => { const d = document.getElementById('email').contentDocument;"
                " return d && d.body && getComputedStyle(d.body).backgroundColor === 'rgb(20, 26, 24)'; }"
            )
            assert light == "rgb(243, 239, 232)" and "mode=dark" in page.url
            page.screenshot(path=str(ARTIFACTS / "preview-dark.png"), full_page=True)

            # images off: the product image does not load, its alt text stands in
            page.click("#images button[data-images=off]")
            page.wait_for_function("document.getElementById('email').src.includes('images=off')")
            page.wait_for_function(
                "() => { const d = document.getElementById('email').contentDocument;"
                " const i = d && d.querySelector('img'); return i && i.complete && i.naturalWidth === 0; }"
            )
            assert frame.locator("img").first.get_attribute("alt") == "Speckled stoneware bowl"
            page.screenshot(path=str(ARTIFACTS / "preview-images-off.png"), full_page=True)

            # a 390 px phone: no page scrolls sideways, the email and the checks fit
            page.set_viewport_size({"width": 390, "height": 844})
            for path in ("/", "/campaigns/weekly-picks?width=mobile", "/dashboard"):
                page.goto(url + path)
                if "campaigns/" in path:
                    page.wait_for_selector("#check-results")
                    card = page.locator("#checks-card").bounding_box()
                    assert card is not None and card["x"] >= 0 and card["x"] + card["width"] <= 390
                    device = page.locator("#device").bounding_box()
                    assert device is not None and device["width"] <= 390
                _no_sideways_scroll(page)
                page.screenshot(
                    path=str(
                        ARTIFACTS / f"preview-390{path.replace('/', '-').split('?')[0] or '-index'}.png"
                    ),
                    full_page=True,
                )
            # money on the dashboard carries its currency symbol
            assert "£" in page.locator(".kpis").inner_text()
            page.close()
    finally:
        if not page.is_closed():
            page.close()
        store.close()


def toolbox_missing() -> set[str]:
    from tests.real_shops import toolbox

    return set(toolbox().missing_reasons())
