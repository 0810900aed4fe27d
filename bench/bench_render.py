"""Render throughput: ready context -> wire bytes, on one core.

Pipelines, all measured in this run on the same contexts (the weekly-picks starter, 4+4 products,
a different customer name, reason and unsubscribe token per email):

* retain        CampaignRenderer.render (compiled shape) + build_message (hand-built MIME)
* baseline      Jinja + MJML for every email (render_full) + email.message.EmailMessage
* full+fast     Jinja + MJML for every email + build_message (shows what MIME alone buys)
* compiled+std  compiled render + EmailMessage (shows what compiling alone buys)

Goal (issue #4): retain >= 3,000 emails/s and >= 6x baseline. ``python -m bench render``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from pathlib import Path
from typing import Any

from campaigns.config import Settings
from campaigns.definition import find_campaign
from campaigns.kinds import build_context
from campaigns.kinds.fixture import load_fixture
from campaigns.message import build_message
from campaigns.render import CampaignRenderer, RenderedEmail

ROOT = Path(__file__).resolve().parent.parent
N_CONTEXTS = 200


def _contexts(settings: Settings) -> tuple[CampaignRenderer, list[dict[str, Any]]]:
    definition = find_campaign(ROOT / "templates", "weekly-picks")
    inputs = load_fixture(definition)
    contexts = []
    for i in range(N_CONTEXTS):
        customer = replace(inputs.customer, id=1000 + i, first_name=f"Customer{i}", email=f"c{i}@example.com")
        ctx = build_context(definition, settings, replace(inputs, customer=customer), run_key="bench")
        ctx["blocks"][1]["products"][0]["reason"] = f"Because you bought item {i}"
        contexts.append(ctx)
    return CampaignRenderer(definition, settings), contexts


def _fast_message(rendered: RenderedEmail, ctx: dict[str, Any]) -> bytes:
    return build_message(
        rendered,
        to_email=ctx["customer"]["email"],
        to_name=ctx["customer"]["name"],
        from_="Retain Demo Shop <hello@shop.example.com>",
        list_unsubscribe_url=ctx["unsubscribe_url"],
        list_unsubscribe_mailto="unsubscribe@shop.example.com",
        campaign="weekly-picks",
        run_key="bench",
        message_id_domain="shop.example.com",
    ).data


def _stdlib_message(rendered: RenderedEmail, ctx: dict[str, Any]) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Retain Demo Shop <hello@shop.example.com>"
    msg["To"] = formataddr((ctx["customer"]["name"], ctx["customer"]["email"]))
    msg["Subject"] = rendered.subject
    msg["Date"] = formatdate()
    msg["Message-ID"] = make_msgid(domain="shop.example.com")
    msg["List-Unsubscribe"] = f"<{ctx['unsubscribe_url']}>, <mailto:unsubscribe@shop.example.com>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg["X-Retain-Campaign"] = "weekly-picks"
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    return msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))


def _rate(work: Callable[[dict[str, Any]], bytes], contexts: list[dict[str, Any]], seconds: float) -> float:
    done = 0
    start = time.perf_counter()
    while True:
        for ctx in contexts:
            work(ctx)
        done += len(contexts)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


def main(seconds: float = 3.0) -> dict[str, float]:
    settings = Settings(secret_key="bench", var_dir="var")
    renderer, contexts = _contexts(settings)
    for ctx in contexts[:3]:  # warm up: compile the shape, check it against a full render
        assert renderer.render(ctx) == renderer.render_full(ctx)
    pipelines: dict[str, Callable[[dict[str, Any]], bytes]] = {
        "retain (compiled + hand MIME)": lambda c: _fast_message(renderer.render(c), c),
        "baseline (Jinja+MJML each + EmailMessage)": lambda c: _stdlib_message(renderer.render_full(c), c),
        "full render + hand MIME": lambda c: _fast_message(renderer.render_full(c), c),
        "compiled render + EmailMessage": lambda c: _stdlib_message(renderer.render(c), c),
        "compiled render only": lambda c: renderer.render(c).html.encode(),
    }
    rates = {name: _rate(work, contexts, seconds) for name, work in pipelines.items()}
    base = rates["baseline (Jinja+MJML each + EmailMessage)"]
    size = len(_fast_message(renderer.render(contexts[0]), contexts[0]))
    print(
        f"weekly-picks, {N_CONTEXTS} distinct contexts, {size:,} bytes per message, one core, {seconds:.0f}s each"
    )
    for name, rate in rates.items():
        print(f"  {name:45s} {rate:9,.0f} emails/s   {rate / base:5.1f}x baseline")
    print(f"  shapes compiled: {renderer.stats.shapes}; fallback: {renderer.stats.fallback_reason or 'none'}")
    retain = rates["retain (compiled + hand MIME)"]
    print(f"goal: >= 3,000/s and >= 6x baseline -> {retain:,.0f}/s, {retain / base:.1f}x")
    return rates


if __name__ == "__main__":
    main()
