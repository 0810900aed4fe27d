"""Wire-ready messages: headers, encodings, line lengths, header injection, DKIM."""

from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import dkim
import pytest

from campaigns.config import Settings
from campaigns.definition import find_campaign
from campaigns.errors import ConfigError, SenderError
from campaigns.factory import BuildOptions, EmailFactory
from campaigns.kinds import build_context
from campaigns.kinds.fixture import fixture_member, load_fixture
from campaigns.message import DkimConfig, build_message, clean_header_value
from campaigns.render import CampaignRenderer, RenderedEmail

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
LONG_HTML = "<table><tr><td>" + "<span>x é</span>" * 3000 + "</td></tr></table>"


def build(rendered: RenderedEmail | None = None, **kw: object):
    args: dict = dict(
        to_email="ada@example.com",
        to_name="Ada Lovelace",
        from_="Shop <hello@shop.example>",
        list_unsubscribe_url="https://r.example/u/TOKEN",
        list_unsubscribe_mailto="unsub@shop.example",
        campaign="weekly-picks",
        run_key="run-1",
        message_id_domain="shop.example",
    )
    args.update(kw)
    return build_message(rendered or RenderedEmail("Hello", "pre", LONG_HTML, "Hi Ada\nLine 2\n"), **args)


def parse(data: bytes):
    return message_from_bytes(data, policy=policy.default)


def test_headers_and_structure() -> None:
    out = build()
    msg = parse(out.data)
    assert msg["From"] == "Shop <hello@shop.example>" and msg["To"] == "Ada Lovelace <ada@example.com>"
    assert msg["Subject"] == "Hello" and msg["Date"] and msg["MIME-Version"] == "1.0"
    assert msg["Message-ID"] == out.message_id and out.message_id.endswith("@shop.example>")
    assert (
        msg["List-Unsubscribe"]
        == "<https://r.example/u/TOKEN>, <mailto:unsub@shop.example?subject=unsubscribe>"
    )
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["X-Retain-Campaign"] == "weekly-picks" and msg["X-Retain-Run"] == "run-1"
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert parts[0].get_content().replace("\r\n", "\n") == "Hi Ada\nLine 2\n"
    assert parts[1].get_content() == LONG_HTML
    assert out.mail_from == "hello@shop.example" and out.rcpt_to == "ada@example.com"


def test_lines_are_short_and_crlf() -> None:
    data = build().data
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 78


def test_message_id_is_stable_per_delivery() -> None:
    assert build().message_id == build().message_id
    assert build(run_key="run-2").message_id != build().message_id


def test_non_ascii_names_and_subject_are_encoded() -> None:
    out = build(
        RenderedEmail("Grüße 😀", "", "<p>é</p>", "é\n"),
        to_name='Zoë "Q" Ünal',
        from_="Café Ü <a@shop.example>",
    )
    assert out.data.isascii()
    msg = parse(out.data)
    assert msg["Subject"] == "Grüße 😀"
    assert msg["To"].addresses[0].display_name == 'Zoë "Q" Ünal'
    assert msg["From"].addresses[0].display_name == "Café Ü"


@pytest.mark.parametrize(
    "evil",
    ["x\r\nBcc: victim@example.com", "x\nBcc: victim@example.com", "x\rBcc: v@e.com", "x\x00\x0b\x85\u2028y"],
)
def test_header_injection_is_impossible(evil: str) -> None:
    out = build(
        RenderedEmail(evil, "", "<p>h</p>", "t"),
        to_name=evil,
        run_key=evil,
        campaign=evil,
        extra_headers={"X-Note": evil},
    )
    msg = parse(out.data)
    assert msg["Bcc"] is None and msg.defects == []
    assert msg["Subject"] == clean_header_value(evil)
    assert "\n" not in msg["X-Note"] and "\r" not in msg["Subject"]


def test_bad_addresses_and_headers() -> None:
    for bad in ["no-at-sign", "a@b@c", "x <a@b.c>", "a@b.c\r\nBcc: d@e.f".replace("\r\n", " ")]:
        with pytest.raises(SenderError) as info:
            build(to_email=bad)
        assert info.value.permanent
    assert build(to_email="a@bücher.example").rcpt_to == "a@xn--bcher-kva.example"
    with pytest.raises(ConfigError, match="would replace"):
        build(extra_headers={"List-Unsubscribe": "<https://evil>"})
    with pytest.raises(ConfigError):
        build(extra_headers={"Bad Name": "x"})
    with pytest.raises(ConfigError):
        build(from_="not an address")


def test_dkim_signature_covers_list_unsubscribe() -> None:
    key = (DATA / "dkim_test_key.pem").read_bytes()
    public = (DATA / "dkim_test_key.pub").read_text().strip()
    out = build(dkim=DkimConfig("sel", "shop.example", key))
    assert out.data.startswith(b"DKIM-Signature:")
    sig = out.data.split(b"\r\n\r\n", 1)[0].decode()
    h = sig.split(" h=", 1)[1].split(";", 1)[0].replace("\r\n", "").replace(" ", "")
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject"} <= set(h.lower().split(":"))

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"sel._domainkey.shop.example."
        return f"v=DKIM1; k=rsa; p={public}".encode()

    assert dkim.verify(out.data, dnsfunc=dns)
    tampered = out.data.replace(b"<https://r.example/u/TOKEN>", b"<https://evil.example/u/X>")
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_campaign_message_from_rendered_fixture(tmp_path: Path) -> None:
    settings = Settings(
        secret_key="m", reply_to="Help <help@shop.example>", unsubscribe_mailto="u@shop.example"
    )
    d = find_campaign(ROOT / "templates", "weekly-picks")
    inputs = load_fixture(d)
    factory = EmailFactory(settings, d, catalogue=None, recommender=None, options=BuildOptions(run_key="k"))
    item = factory.prepare_inputs(fixture_member(inputs), inputs)
    ctx = item.context
    # the same inputs the factory used (its clock stamps the signed links), rendered by the renderer alone
    rendered = CampaignRenderer(d, settings).render(build_context(d, settings, item.inputs))
    assert rendered == item.rendered  # the factory renders what the renderer alone renders
    out = factory.message(inputs.customer, rendered, ctx, to_email="ada@example.com")
    msg = parse(out.data)
    assert msg["From"] == settings.from_address and msg["Reply-To"] == "Help <help@shop.example>"
    assert msg["List-Unsubscribe"].startswith(f"<{ctx['unsubscribe_url']}>")
    assert msg.get_body(("html",)).get_content() == rendered.html
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n") == rendered.text
