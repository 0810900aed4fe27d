"""campaigns/checks on hand-made HTML and real starter emails; `retain check`; locale and dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from campaigns.checks import EmailChecker, static_checks
from campaigns.checks.caniemail import DEGRADES, caniemail_check
from campaigns.checks.spam import parse_report, spam_check
from campaigns.checks.static import GMAIL_CLIP_BYTES, images_check, is_loopback, links_check, size_check
from campaigns.cli import main
from campaigns.cli.check import fixture_email
from campaigns.config import Settings, load_settings
from campaigns.definition import find_campaign, parse_campaign
from campaigns.errors import ConfigError, TemplateError
from campaigns.kinds.common import locale_context
from campaigns.web.preview_app import force_dark
from tests.real_shops import STARTERS, TEMPLATES, need_tool, toolbox

SHOP = Settings(shop_url="https://shop.example.com", public_url="https://mail.shop.example.com/r")


def findings(result: object) -> list[tuple[str, str]]:
    return [(f.severity, f.message) for f in result.findings]  # type: ignore[attr-defined]


def test_links_https_utm_loopback_and_unsubscribe() -> None:
    html = (
        '<a href="https://shop.example.com/p/1?utm_source=retain&utm_medium=email&utm_campaign=x">ok</a>'
        '<a href="https://shop.example.com/p/2">no utm</a>'
        '<a href="http://other.example/">plain http</a>'
        '<a href="https://127.0.0.1:8000/x">loopback</a><a href="https://localhost/y">localhost</a>'
        '<a href="mailto:a@b.example">mail</a><a href="javascript:alert(1)">js</a>'
    )
    result = links_check(html, SHOP, unsubscribe_url="https://mail.shop.example.com/r/u/T")
    assert result.status == "fail"
    assert findings(result) == [
        ("warn", "shop link without utm_source, utm_medium, utm_campaign"),
        ("fail", "link without https"),
        ("fail", "link to a loopback address (works only on this machine)"),
        ("fail", "link to a loopback address (works only on this machine)"),
        ("fail", "link with scheme 'javascript'"),
        ("fail", "no unsubscribe link (extend layouts/base.mjml)"),
    ]
    assert is_loopback("[::1]") and is_loopback("app.localhost") and not is_loopback("shop.example.com")


def test_links_from_the_public_url_setting_warn_once_naming_the_setting() -> None:
    local = Settings(public_url="http://127.0.0.1:8026")
    html = '<a href="http://127.0.0.1:8026/u/T">Unsubscribe</a><a href="http://127.0.0.1:8026/f/1">1</a>'
    result = links_check(html, local, unsubscribe_url="http://127.0.0.1:8026/u/T")
    assert result.status == "warn"
    assert [f.where for f in result.findings] == ["setting public_url"]


def test_images_https_alt_and_width() -> None:
    html = (
        '<img src="https://cdn.example/a.jpg" alt="A bowl" width="248">'
        '<img src="http://cdn.example/b.jpg" alt="b" width="100">'
        '<img src="https://cdn.example/c.jpg" width="100">'
        '<a href="https://x.example"><img src="https://cdn.example/d.jpg" alt="" width="100"></a>'
        '<img src="https://cdn.example/e.jpg" alt="" width="1200">'
        '<img src="data:image/png;base64,AAAA" alt="" width="1">'
    )
    result = images_check(html)
    assert result.data["images"] == 6
    assert findings(result) == [
        ("fail", "image without https"),
        ("fail", 'image without alt text (use alt="" for decoration)'),
        ("fail", "linked image with empty alt: the link has no name"),
        ("warn", "image 1200 px wide, wider than the 600 px email"),
        ("fail", "inline data: image (Gmail blocks it; it counts towards the clip)"),
    ]
    assert images_check('<img src="https://x.example/d.png" alt="" width="20">').status == "pass"


def test_size_against_the_clip_and_max_email_kb() -> None:
    assert size_check("<p>small</p>", SHOP).status == "pass"
    assert size_check("x" * int(0.85 * 100 * 1024), SHOP).status == "warn"
    assert size_check("x" * (GMAIL_CLIP_BYTES + 1), Settings(max_email_kb=200)).status == "fail"
    assert size_check("x" * 30 * 1024, Settings(max_email_kb=20)).status == "fail"


SA_OUTPUT = """X-Spam-Checker-Version: SpamAssassin 4.0.1
Subject: hi

body

Content analysis details:   (1.4 points, 5.0 required)

 pts rule name              description
---- ---------------------- --------------------------------------------------
-0.0 NO_RECEIVED            Informational: message has no Received headers
 0.7 HTML_FONT_LOW_CONTRAST BODY: HTML font color similar or identical to
                            background
 0.7 EXTRA_RULE             Something else

"""


def test_spamassassin_report_parsing_and_setup_rules() -> None:
    report = parse_report(SA_OUTPUT)
    assert report.total == 1.4
    assert [(r.name, r.score) for r in report.rules] == [
        ("NO_RECEIVED", -0.0),
        ("HTML_FONT_LOW_CONTRAST", 0.7),
        ("EXTRA_RULE", 0.7),
    ]
    assert report.rules[1].description == "BODY: HTML font color similar or identical to background"
    assert report.score == 1.4
    assert "(setup)" in report.table().splitlines()[1]
    with pytest.raises(ValueError):
        parse_report("no report here")
    assert spam_check(b"x", None, "SpamAssassin is not installed").status == "skipped"


def test_locale_gives_lang_and_dir() -> None:
    assert locale_context("en") == {"lang": "en", "dir": "ltr"}
    assert locale_context("ar_EG") == {"lang": "ar-EG", "dir": "rtl"}
    assert locale_context("he") == {"lang": "he", "dir": "rtl"}
    assert locale_context("ku-Latn") == {"lang": "ku-Latn", "dir": "ltr"}
    assert locale_context("pa-Arab") == {"lang": "pa-Arab", "dir": "rtl"}
    with pytest.raises(ConfigError, match="'locale' must be a language tag"):
        load_settings(env={}, locale="english please")


def test_a_campaign_locale_sets_html_lang_and_dir(tmp_path: Path) -> None:
    source = (TEMPLATES / "emails" / "we-miss-you.mjml").read_text()
    path = tmp_path / "templates" / "emails" / "we-miss-you.mjml"
    path.parent.mkdir(parents=True)
    for sub in ("layouts", "partials"):
        (tmp_path / "templates" / sub).symlink_to(TEMPLATES / sub)
    path.write_text(source.replace("kind: winback\n", "kind: winback\nlocale: ar\n", 1))
    (path.with_suffix(".preview.json")).write_text(
        (TEMPLATES / "emails" / "we-miss-you.preview.json").read_text()
    )
    settings = Settings(templates_dir=str(tmp_path / "templates"), public_url=SHOP.public_url)
    item = fixture_email(settings, find_campaign(tmp_path / "templates", "we-miss-you"))
    assert not isinstance(item, str)
    html = item.rendered.html
    assert html.startswith('<!doctype html><html lang="ar" dir="rtl"')
    assert "direction:rtl" in html and 'align="right"' in html
    english = fixture_email(Settings(locale="en-GB"), find_campaign(TEMPLATES, "we-miss-you"))
    assert not isinstance(english, str) and '<html lang="en-GB" dir="ltr"' in english.rendered.html
    with pytest.raises(TemplateError, match="'locale' must be a language tag"):
        parse_campaign(path, source.replace("kind: winback\n", "kind: winback\nlocale: 'x y'\n", 1))


def test_every_starter_fixture_passes_the_static_checks() -> None:
    settings = Settings(public_url=SHOP.public_url)
    for name in STARTERS:
        item = fixture_email(settings, find_campaign(TEMPLATES, name))
        assert not isinstance(item, str)
        results = static_checks(item.rendered.html, settings, str(item.context["unsubscribe_url"]))
        assert [(r.name, r.status) for r in results] == [
            ("size", "pass"),
            ("links", "pass"),
            ("images", "pass"),
        ], (
            name,
            [r.findings for r in results],
        )


def test_can_i_email_finds_unsupported_layout_features_and_knows_the_graceful_ones() -> None:
    tools = toolbox()
    need_tool(tools.caniemail_missing)
    clients = ["outlook.windows", "gmail.desktop-webmail", "apple-mail.macos"]
    flex = '<html><body><div style="display:flex;border-radius:4px"><p>a</p><p>b</p></div></body></html>'
    result = caniemail_check(flex, clients, tools)
    unsupported = {row["feature"]: row for row in result.data["unsupported"]}
    assert unsupported["border-radius"]["degrades_to"] == DEGRADES["border-radius"]
    assert result.status == "fail" and any(
        "display:flex" in f.message or "flex" in f.message.lower() for f in result.findings
    ), result.findings
    item = fixture_email(Settings(public_url=SHOP.public_url), find_campaign(TEMPLATES, "weekly-picks"))
    assert not isinstance(item, str)
    assert caniemail_check(item.rendered.html, clients, tools).status == "pass"


def test_retain_check_json_on_the_fixture(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RETAIN_TEMPLATES_DIR", str(TEMPLATES))
    monkeypatch.setenv("RETAIN_PUBLIC_URL", "https://mail.shop.example.com/r")
    assert main(["check", "weekly-picks", "--fixture", "--only", "size,links,images", "--json"]) == 0
    [report] = json.loads(capsys.readouterr().out)
    assert report["campaign"] == "weekly-picks" and report["source"] == "preview fixture"
    assert [(c["name"], c["status"]) for c in report["checks"]] == [
        ("size", "pass"),
        ("links", "pass"),
        ("images", "pass"),
    ]
    assert main(["check", "weekly-picks", "--only", "nope"]) == 1
    # a loopback public_url is configuration: a warning naming the setting, exit 0
    monkeypatch.setenv("RETAIN_PUBLIC_URL", "http://127.0.0.1:8026")
    assert main(["check", "weekly-picks", "--fixture", "--only", "links"]) == 0
    assert "setting public_url" in capsys.readouterr().out


def test_retain_check_with_every_tool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tools = toolbox()
    for missing in tools.missing_reasons().values():
        need_tool(missing)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RETAIN_TEMPLATES_DIR", str(TEMPLATES))
    monkeypatch.setenv("RETAIN_PUBLIC_URL", "https://mail.shop.example.com/r")
    shots = tmp_path / "shots"
    assert main(["check", "thank-you-follow-up", "--fixture", "--screenshots", str(shots), "--json"]) == 0
    [report] = json.loads(capsys.readouterr().out)
    status = {c["name"]: c["status"] for c in report["checks"]}
    assert status == dict.fromkeys(
        ("size", "links", "images", "caniemail", "accessibility", "layout", "spam"), "pass"
    )
    assert {p.name for p in shots.iterdir()} >= {
        "thank-you-follow-up-0-375.png",
        "thank-you-follow-up-0-600.png",
    }
    # a page that scrolls sideways and has an unlabelled link fails the browser checks
    with EmailChecker(Settings(), only=("accessibility", "layout"), tools=tools) as checker:
        bad = '<html lang="en"><body><a href="https://x.example"><img src="https://x.example/i.png" width="900"></a></body></html>'
        report_bad = checker.check_parts(
            campaign="t", subject="s", html=bad, wire=None, unsubscribe_url=None, source="test"
        )
    assert report_bad.result("layout").status == "fail"  # type: ignore[union-attr]
    assert report_bad.result("accessibility").status == "fail"  # type: ignore[union-attr]


def test_force_dark_turns_the_dark_mode_rules_on() -> None:
    html = "<html><head><style>@media (prefers-color-scheme: dark) { body { background:#000 } }</style></head></html>"
    dark = force_dark(html)
    assert "@media all" in dark and "prefers-color-scheme" not in dark
    assert '<meta name="color-scheme" content="dark">' in dark
