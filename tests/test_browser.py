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
