"""Every starter campaign, built by the email factory for real customers of two real shops (Online
Retail and Groceries), checked by the real tools: SpamAssassin, axe-core in Debian's Chromium, Can I
Email, and the layout at 375 px and 600 px. Screenshots: test-artifacts/emails/.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest

from campaigns.checks import EmailChecker
from campaigns.checks.spam import SETUP_RULES, run_spamassassin
from campaigns.definition import find_campaign
from campaigns.factory import Prepared, campaign_recommender
from campaigns.runner import run_campaign
from tests.postfix_instance import postfix_instance, postfix_missing
from tests.real_shops import (
    ARTIFACTS,
    DATA,
    STARTERS,
    TEMPLATES,
    Shop,
    addressed,
    build_shop,
    need_tool,
    real_emails,
    real_members,
    starter_campaigns,
    toolbox,
)

pytestmark = pytest.mark.slow

#: rules that fire because of how this test builds and scores the message, never because of its content:
#: the message is scored as the factory builds it, before any server relays it, and without DNS, so the
#: DKIM key of shop.example.com cannot be fetched to verify the signature (tests/test_postfix_delivery.py
#: verifies it after a real MTA)
TEST_SETUP_RULES = {
    name: SETUP_RULES[name]
    for name in ("NO_RECEIVED", "NO_RELAYS", "DKIM_SIGNED", "DKIM_INVALID", "T_DKIM_INVALID")
}
MAX_SCORE = 0.5


@pytest.fixture(scope="module", params=["online-retail", "groceries"])
def shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    yield from build_shop(request.param, tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def emails(shop: Shop) -> list[tuple[str, str, Prepared]]:
    """(campaign, source, email) for every starter campaign: two real recipients and the largest context."""
    found = []
    for definition in starter_campaigns():
        for source, item in real_emails(shop, definition):
            found.append((definition.name, source, item))
    return found


def test_every_starter_campaign_has_real_emails(shop: Shop, emails: list[tuple[str, str, Prepared]]) -> None:
    names = {name for name, _, _ in emails}
    assert names >= set(STARTERS) - {"back-in-stock"}, names  # back-in-stock needs catalogue events (below)
    for name, source, item in emails:
        assert item.email is not None and b"DKIM-Signature:" in item.email.data
        html = item.rendered.html
        assert len(html.encode()) < 100 * 1024, f"{shop.name} {name} {source}: {len(html) // 1024} KB"
        assert '<html lang="en" dir="ltr"' in html
        assert '<meta name="color-scheme" content="light dark"' in html
        assert "color:#ffffff;line-height:1px" not in html  # MJML's white-text preheader is gone
        assert "&#847;&zwnj;&nbsp;" in html  # the preheader is followed by its filler


def test_spamassassin_scores_every_starter_email_at_most_half_a_point(
    shop: Shop, emails: list[tuple[str, str, Prepared]]
) -> None:
    tools = toolbox()
    need_tool(tools.spam_missing)
    worst: list[tuple[float, str]] = []
    for name, source, item in emails:
        assert item.email is not None
        report = run_spamassassin(item.email.data, tools.spamassassin or "spamassassin")
        report = type(report)(report.total, report.rules, frozenset(TEST_SETUP_RULES))
        print(f"\n== SpamAssassin: {shop.name} / {name} / {source}\n{report.table()}")
        assert not {r.name for r in report.rules} & {"HTML_FONT_LOW_CONTRAST", "HTML_FONT_TINY_NORDNS"}
        worst.append((report.score, f"{name} ({source})"))
    assert max(worst)[0] <= MAX_SCORE, sorted(worst, reverse=True)[:3]


@pytest.fixture(scope="module")
def checker(shop: Shop) -> Iterator[EmailChecker]:
    tools = toolbox()
    need_tool(tools.axe_missing)
    need_tool(tools.caniemail_missing)
    with EmailChecker(
        shop.settings,
        only=("accessibility", "layout", "caniemail", "links", "images"),
        screenshots=ARTIFACTS / "emails",
        tools=tools,
    ) as c:
        yield c


def test_axe_layout_and_can_i_email_on_every_starter_email(
    shop: Shop, emails: list[tuple[str, str, Prepared]], checker: Any
) -> None:
    failures: list[str] = []
    seen: set[str] = set()
    for name, source, item in emails:
        if name in seen and source != "largest real context":
            continue  # one real customer and the largest context per campaign: the browser is slow
        seen.add(name)
        slug = f"{shop.name}-{name}-{'largest' if source.startswith('largest') else 'customer'}"
        report = checker.check(item, source=source, name=slug)
        a11y, layout = report.result("accessibility"), report.result("layout")
        assert a11y is not None and layout is not None
        print(f"\n== {shop.name} / {name} / {source}")
        for r in report.results:
            print(f"  {r.name:<14} {r.status:<5} {r.summary}")
            for f in r.findings:
                print(f"      {f.severity}: {f.message} {f.where}")
        failures += [f"{slug}: {p}" for p in report.problems()]
        # zero serious/critical axe violations in any view (light 375/600, dark 375)
        for view in a11y.data["views"]:
            serious = [v["id"] for v in view["violations"] if v["impact"] in ("serious", "critical")]
            assert not serious, f"{slug} {view['view']}: {serious}"
        # no sideways scrolling, the call to action on the first mobile screen
        assert layout.status == "pass", layout.findings
        assert layout.data["views"][375]["cta"]["top"] < 667
        assert (Path(ARTIFACTS / "emails") / f"{slug}-375.png").stat().st_size > 1000
    assert not failures, failures


def test_dkim_signed_campaign_through_a_real_postfix_into_a_maildir(shop: Shop) -> None:
    """weekly-picks for 40 real recipients: SMTP to a test-owned Postfix on 127.0.0.1, virtual(8) into a
    Maildir; every delivered copy parses, carries Postfix's Received header and verifies with dkimpy
    against the test key; the count equals the run's summary."""
    need_tool(postfix_missing())
    definition = find_campaign(TEMPLATES, "weekly-picks")
    members = [addressed(m) for m in real_members(shop, definition, 40)]
    assert len(members) == 40
    public = (DATA / "dkim_test_key.pub").read_text().replace("(", "").replace(")", "").split()
    record = ("v=DKIM1; k=rsa; p=" + "".join(p.strip('"') for p in public)).encode()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"sel._domainkey.shop.example.com."
        return record

    with postfix_instance() as postfix:
        summary = run_campaign(
            shop.store,
            shop.settings,
            definition,
            recommender=campaign_recommender(definition, shop.settings, shop.store),
            run_key=f"postfix-{shop.name}",
            members=iter([members]),
            sender=f"smtp://127.0.0.1:{postfix.port}?tls=none",
        )
        assert summary.status == "completed", summary
        delivered = [path.read_bytes() for path in postfix.wait_for(summary.sent)]
        log = postfix.log.read_text(errors="replace")
    assert summary.sent == len(delivered) > 30
    assert summary.sent + summary.holdout + sum(summary.skipped.values()) == len(members)
    assert "status=sent (delivered to maildir)" in log
    recipients, ids = set(), set()
    for raw in delivered:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert "127.0.0.1" in str(message["Received"]) and "mx.retain-test.localhost" in str(
            message["Received"]
        )
        assert message["X-Retain-Run"] == f"postfix-{shop.name}"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert dkim.verify(raw, dnsfunc=dns), f"DKIM does not verify: {message['To']}"
        assert not dkim.verify(raw.replace(b"Subject: ", b"Subject: Re: ", 1), dnsfunc=dns)
        recipients.add(str(message["To"]))
        ids.add(str(message["Message-ID"]))
    assert len(recipients) == len(ids) == summary.sent  # one copy per recipient, nothing twice
