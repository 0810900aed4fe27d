"""Rendering: the starter emails, compiled shapes == full renders, escaping, errors with file:line."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from campaigns.config import Settings
from campaigns.definition import find_campaign, load_campaign
from campaigns.errors import RenderError, TemplateError
from campaigns.kinds import build_context
from campaigns.kinds.fixture import load_fixture
from campaigns.render import CampaignRenderer

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
SETTINGS = Settings(
    secret_key="render-test", shop_address="7 Test Lane, Testville", public_url="https://r.example"
)
STARTERS = ["weekly-picks", "vip-early-access", "thank-you-follow-up", "we-miss-you"]


def starter(name: str, **customer: object) -> tuple[CampaignRenderer, dict]:
    d = find_campaign(TEMPLATES, name)
    inputs = load_fixture(d)
    if customer:
        from dataclasses import replace

        inputs = replace(inputs, customer=replace(inputs.customer, **customer))
    return CampaignRenderer(d, SETTINGS), build_context(d, SETTINGS, inputs)


def custom(
    tmp_path: Path,
    body: str,
    front: str = "kind: winback\nsubject: 'Hi {{ customer.greeting }}'\n",
    text: str | None = None,
) -> CampaignRenderer:
    root = tmp_path / "templates"
    if not root.exists():
        shutil.copytree(TEMPLATES / "layouts", root / "layouts")
        shutil.copytree(TEMPLATES / "partials", root / "partials")
        (root / "emails").mkdir()
    path = root / "emails" / "t.mjml"
    path.write_text("---\nname: t\n" + front + "---\n" + body)
    if text is not None:
        path.with_suffix(".txt").write_text(text)
    return CampaignRenderer(load_campaign(path), SETTINGS)


def minimal_context(**customer: object) -> dict:
    c = {
        "id": 3,
        "first_name": "Ada",
        "greeting": "Ada",
        "name": "Ada",
        "email": "a@example.com",
        "last_name": "",
    }
    c.update(customer)
    return {
        "customer": c,
        "shop": {"name": "Shop", "url": "https://shop.example/", "address": "1 Road"},
        "unsubscribe_url": "https://r.example/u/x",
        "is_preview": False,
        "run_key": "r",
        "blocks": [],
    }


@pytest.mark.parametrize("name", STARTERS)
def test_starter_renders_compiled_equal_to_full(name: str) -> None:
    renderer, ctx = starter(name)
    email = renderer.render(ctx)
    full = renderer.render_full(ctx)
    assert renderer.stats.compiled == 1 and renderer.stats.full == 0, renderer.stats
    assert email == full
    assert email.html.lstrip().lower().startswith("<!doctype html>")
    assert "7 Test Lane, Testville" in email.html and ctx["unsubscribe_url"] in email.html
    assert "7 Test Lane, Testville" in email.text and ctx["unsubscribe_url"] in email.text
    assert "utm_source=retain&amp;utm_medium=email&amp;utm_campaign=" + name in email.html
    assert not re.search(r"<[a-zA-Z/!]", email.text)  # no markup in the text part
    assert "[[slot" not in email.html and "Preview —" not in email.html
    assert email.subject and "\n" not in email.subject


def test_preheader_and_preview_banner() -> None:
    d = find_campaign(TEMPLATES, "weekly-picks")
    ctx = build_context(d, SETTINGS, load_fixture(d), is_preview=True)
    email = CampaignRenderer(d, SETTINGS).render(ctx)
    assert email.preheader.startswith("Chosen from what you have bought")
    assert email.preheader in email.html and "Preview — not sent to" in email.html
    assert email.preheader not in email.text  # no preheader noise in the text part


def test_feedback_stars_are_signed_links() -> None:
    renderer, ctx = starter("thank-you-follow-up")
    html = renderer.render(ctx).html
    for star in ctx["feedback"]:
        assert f'href="{star["url"]}"' in html
    assert html.count("https://r.example/f/") == 5


def test_card_without_image_has_no_img_and_with_image_has_one() -> None:
    renderer, ctx = starter("weekly-picks")
    html = renderer.render(ctx).html
    assert "<img" not in html  # fixture products have no images: initials tiles instead
    ctx["blocks"][0]["products"][0]["image_url"] = "https://cdn.example/a.png"
    html2 = renderer.render(ctx).html
    assert html2.count("<img") == 1 and 'src="https://cdn.example/a.png"' in html2
    assert renderer.stats.shapes == 2 and renderer.render_full(ctx).html == html2


NASTY = [
    "<script>alert(1)</script>",
    "{{ 7*7 }}{% raw %}",
    "Bob\r\nBcc: evil@example.com",
    "\u202eevil\u200f مرحبا",
    "😀🎉 emoji",
    "A & B \"quoted\" 'single'",
    "x" * 10_000,
]


@pytest.mark.parametrize("nasty", NASTY, ids=["html", "jinja", "crlf", "rtl", "emoji", "quotes", "10kB"])
def test_hostile_strings_render_escaped_and_same_as_full(nasty: str) -> None:
    renderer, ctx = starter("weekly-picks")
    ctx["customer"]["greeting"] = nasty
    card = ctx["blocks"][0]["products"][0]
    card["name"] = card["reason"] = card["category"] = nasty
    card["image_url"] = "https://cdn.example/" + nasty
    email = renderer.render(ctx)
    assert email.html == renderer.render_full(ctx).html and email.text == renderer.render_full(ctx).text
    assert "<script>" not in email.html
    if "<script>" in nasty:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html
    if "{{" in nasty:
        assert "{{ 7*7 }}{% raw %}" in email.html  # printed, never evaluated
    if "\u202e" in nasty:
        assert "\u202eevil\u200f" in email.html and "\\u{" not in email.html


def test_hostile_name_in_subject_is_single_line() -> None:
    renderer, ctx = starter("weekly-picks")
    ctx["customer"]["greeting"] = "Bob\r\nBcc: evil@example.com"
    assert renderer.render(ctx).subject == "Bob Bcc: evil@example.com, new picks for you"


def test_undefined_variable_names_file_line_variable_and_customer(tmp_path: Path) -> None:
    body = '{% extends "layouts/base.mjml" %}\n{% block content %}\n<mj-section><mj-column>\n<mj-text>{{ customer.nickname }}</mj-text>\n</mj-column></mj-section>\n{% endblock %}\n'
    renderer = custom(tmp_path, body)
    with pytest.raises(RenderError) as info:
        renderer.render(minimal_context())
    message = str(info.value)
    assert "t.mjml:9:" in message  # the file line (front matter counted)
    assert "nickname" in message and "customer 3" in message


def test_undefined_in_subject_names_front_matter_line(tmp_path: Path) -> None:
    renderer = custom(
        tmp_path, "<mjml><mj-body></mj-body></mjml>", front="kind: winback\nsubject: '{{ oops }}'\n"
    )
    with pytest.raises(RenderError, match=r"t\.mjml:4: subject: undefined variable: 'oops' is undefined"):
        renderer.render(minimal_context())


def test_missing_include_and_syntax_error_are_clear(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="'partials/nope.mjml' not found"):
        custom(tmp_path, '{% include "partials/nope.mjml" %}').render(minimal_context())
    with pytest.raises(TemplateError, match=r"t\.mjml:7: template syntax error"):
        custom(tmp_path, "<mjml>\n{% if %}\n</mjml>")
    with pytest.raises(TemplateError, match="MJML error"):
        custom(tmp_path, "<mjml><mj-body><mj-section></mj-body></mjml>").render(minimal_context())


def test_structural_use_of_a_value_stays_correct(tmp_path: Path) -> None:
    body = (
        "<mjml><mj-body><mj-section><mj-column><mj-text>"
        '{% if customer.first_name == "Ada" %}Hello Ada{% else %}Hi {{ customer.first_name | upper }}{% endif %}'
        "</mj-text></mj-column></mj-section></mj-body></mjml>"
    )
    renderer = custom(tmp_path, body)
    ada = renderer.render(minimal_context(first_name="Ada"))
    bob = renderer.render(minimal_context(first_name="Bob"))
    assert "Hello Ada" in ada.html and "Hi BOB" in bob.html and "Hello Ada" not in bob.html
    assert bob.html == renderer.render_full(minimal_context(first_name="Bob")).html


def test_generated_text_reads_well(tmp_path: Path) -> None:
    body = (
        '{% extends "layouts/base.mjml" %}{% block content %}<mj-section><mj-column>'
        "<mj-text><h1>Hello {{ customer.greeting }}</h1><p>Line one &amp; more.</p></mj-text>"
        '<mj-button href="https://shop.example/x">Shop now</mj-button>'
        "</mj-column></mj-section>{% endblock %}"
    )
    renderer = custom(tmp_path, body, front="kind: winback\nsubject: s\npreheader: 'secret preheader'\n")
    text = renderer.render(minimal_context()).text
    assert "Hello Ada" in text and "Line one & more." in text
    assert "Shop now (https://shop.example/x)" in text
    assert "Unsubscribe (https://r.example/u/x)" in text and "1 Road" in text
    assert "secret preheader" not in text and "<" not in text and "{" not in text
    assert "\n\n\n" not in text


def test_mj_style_inline_is_inlined(tmp_path: Path) -> None:
    body = (
        '<mjml><mj-head><mj-style inline="inline">.promo { color: #ff0000; }</mj-style></mj-head>'
        '<mj-body><mj-section><mj-column><mj-text css-class="x"><p class="promo">{{ customer.greeting }}</p></mj-text>'
        "</mj-column></mj-section></mj-body></mjml>"
    )
    renderer = custom(tmp_path, body)
    html = renderer.render(minimal_context()).html
    assert re.search(r'<p class="promo" style="color: ?#ff0000;?">Ada</p>', html), html[-600:]


def test_text_template_beside_mjml_is_used(tmp_path: Path) -> None:
    renderer = custom(
        tmp_path, "<mjml><mj-body></mj-body></mjml>", text="Hi {{ customer.greeting }} <b>&</b>\n"
    )
    assert (
        renderer.render(minimal_context(greeting="A<b>")).text == "Hi A<b> <b>&</b>\n"
    )  # text is not escaped
