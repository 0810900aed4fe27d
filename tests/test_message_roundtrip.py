"""Property: Python's email parser reads every hand-built message back to the same headers, text and HTML."""

from __future__ import annotations

from email import message_from_bytes, policy

from hypothesis import given, settings
from hypothesis import strategies as st

from campaigns.message import build_message, clean_header_value, normalize_display_name
from campaigns.render import RenderedEmail

unicode_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


@settings(max_examples=300, deadline=None)
@given(subject=unicode_text, name=unicode_text, text=unicode_text, html=unicode_text, run=unicode_text)
def test_parser_reads_back_what_was_built(subject: str, name: str, text: str, html: str, run: str) -> None:
    out = build_message(
        RenderedEmail(subject, "", html, text),
        to_email="someone@example.com",
        to_name=name,
        from_="Shop <hello@shop.example>",
        list_unsubscribe_url="https://r.example/u/t",
        list_unsubscribe_mailto=None,
        campaign="c",
        run_key=run,
        message_id_domain="shop.example",
    )
    assert out.data.isascii()
    assert max(len(line) for line in out.data.split(b"\r\n")) <= 998
    msg = message_from_bytes(out.data, policy=policy.default)
    assert msg.defects == []
    assert str(msg["Subject"]) == clean_header_value(subject)
    assert str(msg["X-Retain-Run"]) == clean_header_value(run)
    to = msg["To"].addresses[0]
    assert to.addr_spec == "someone@example.com"
    assert to.display_name == normalize_display_name(name)
    assert _newlines(msg.get_body(("plain",)).get_content()) == _newlines(text)
    assert _newlines(msg.get_body(("html",)).get_content()) == _newlines(html)
