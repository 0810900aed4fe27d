"""One way to build an email: a real send, `retain render --format eml`, lint and the preview build the
same message through the email factory — DKIM and Reply-To included on every path."""

from __future__ import annotations

from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import dkim
import pytest

from campaigns import factory
from campaigns.cli import main
from campaigns.config import Settings, settings_to_env
from campaigns.definition import find_campaign
from campaigns.runner import run_campaign
from campaigns.training import load_recommender, train_model

from .smtp_sink import SmtpSink
from .synthetic import make_shop, shop_settings

DATA = Path(__file__).parent / "data"
#: headers a send and a render of the same run legitimately differ in: the moment the message was built,
#: and the signature over it
PER_SEND = {"date", "dkim-signature"}
PINNED = datetime(2024, 6, 3, 9, 30, tzinfo=UTC)


def _dns(name: bytes, timeout: int = 5) -> bytes:
    assert name == b"sel._domainkey.shop.example."
    public = (DATA / "dkim_test_key.pub").read_text().strip()
    return f"v=DKIM1; k=rsa; p={public}".encode()


@pytest.fixture
def signed_shop(store: Any, tmp_path: Path) -> dict[str, Any]:
    settings = shop_settings(
        tmp_path,
        dkim_selector="sel",
        dkim_domain="shop.example",
        dkim_private_key_path=str(DATA / "dkim_test_key.pem"),
        reply_to="Help Desk <help@shop.example>",
        from_address="Shop <hello@shop.example>",
    )
    make_shop(store, customers=25)
    train_model(store, settings)
    return {"store": store, "settings": settings, "model": load_recommender(settings, store)}


def _headers(data: bytes) -> list[tuple[str, str]]:
    msg = message_from_bytes(data, policy=policy.compat32)
    return [(k.lower(), str(v)) for k, v in msg.items() if k.lower() not in PER_SEND]


def _body(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[1]


def test_a_real_send_is_signed_and_carries_reply_to_and_render_eml_matches_it(
    signed_shop: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsysbinary: Any
) -> None:
    # a pinned clock: the signed links' issue time (and the Date header) come from the factory's clock
    monkeypatch.setattr(factory, "wall_clock", lambda: PINNED)
    s: Settings = signed_shop["settings"]
    d = find_campaign(Path(s.templates_dir), "weekly-picks")
    with SmtpSink() as sink:
        summary = run_campaign(
            signed_shop["store"], s, d, recommender=signed_shop["model"], sender=sink.dsn, run_key="signed"
        )
        received = list(sink.stats.messages)
    assert summary.sent == len(received) > 0
    for _, _, data in received:
        assert data.startswith(b"DKIM-Signature:") and dkim.verify(data, dnsfunc=_dns)
        msg = message_from_bytes(data, policy=policy.default)
        assert (
            msg["Reply-To"] == "Help Desk <help@shop.example>" and msg["From"] == "Shop <hello@shop.example>"
        )
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # the same customer, rendered as that run: every header but the per-send ones, and the whole body
    _, rcpt, sent = received[0]
    for key, value in settings_to_env(s).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(
        "RETAIN_DATABASE_URL", signed_shop["store"].engine.url.render_as_string(hide_password=False)
    )
    (tmp_path / "empty.toml").write_text("")
    monkeypatch.setenv("RETAIN_CONFIG", str(tmp_path / "empty.toml"))
    out = tmp_path / "render.eml"
    argv = [
        "render",
        "weekly-picks",
        "--customer",
        rcpt,
        "--format",
        "eml",
        "--run-key",
        "signed",
        "--out",
        str(out),
    ]
    assert main(argv) == 0, capsysbinary.readouterr().err
    rendered = out.read_bytes()
    assert dkim.verify(rendered, dnsfunc=_dns)
    assert _headers(rendered) == _headers(sent)
    assert message_from_bytes(rendered)["Date"] == message_from_bytes(sent)["Date"]  # the pinned clock
    assert _body(rendered) == _body(sent)


def test_lint_and_preview_build_the_message_with_the_same_headers(signed_shop: dict[str, Any]) -> None:
    """The preview's header panel shows the signed message a send would build (To aside)."""
    from campaigns.web.preview import PreviewService

    s: Settings = signed_shop["settings"]
    service = PreviewService(signed_shop["store"], s, recommender=signed_shop["model"])
    result = service.render("weekly-picks", customer_id=1)
    assert result.error is None and result.rendered is not None
    assert "Reply-To: Help Desk <help@shop.example>" in result.headers
    assert result.headers.startswith("DKIM-Signature:")
    from campaigns.cli.content import lint_campaign

    assert lint_campaign(Path(s.templates_dir) / "emails" / "weekly-picks.mjml", s) == []
