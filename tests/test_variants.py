"""A/B variants end to end: front matter (and its bad input), deterministic assignment stored on the ledger,
per-variant subject/content/strategy in the sent emails, lint per variant, and test-then-winner as one
resumable run (phase and decision stored, shown by `retain run show`), on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import json
import shutil
from datetime import UTC, datetime, timedelta
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest

from campaigns import abtest
from campaigns.cli import main
from campaigns.cli.content import lint_campaign
from campaigns.definition import find_campaign, parse_campaign
from campaigns.errors import TemplateError
from campaigns.runner import run_campaign
from campaigns.senders import memory
from campaigns.status import RunStatus
from campaigns.variants import assign_variant, in_test_share
from tests.synthetic import ROOT, make_shop, shop_settings
from tests.test_web import StubRecommender

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"

VARIANTS = """variants:
  - name: a
    content: {intro: "A few favourites to stock up on"}
  - name: b
    weight: 1
    subject: "{{ customer.greeting }}, something new for you"
    content: {intro: "Something new, picked for you"}
    recommend: {blocks: [discover, buy_again], count: 4}
"""


def campaign_source(extra: str = VARIANTS, intro: str = "{{ variant.content.intro }}") -> str:
    source = (ROOT / "templates" / "emails" / "weekly-picks.mjml").read_text()
    source = source.replace("segment: active-buyers\n", "segment: active-buyers\n" + extra)
    return source.replace(
        "A few favourites to stock up on, and some new things we think you will like", intro
    )


@pytest.fixture
def shop(store: Any, tmp_path: Path) -> dict[str, Any]:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    settings = shop_settings(tmp_path, templates_dir=str(templates), public_url="https://shop.example.test/r")
    make_shop(store, customers=240)
    memory.clear()
    return {"store": store, "settings": settings, "templates": templates}


def write_campaign(shop: dict[str, Any], source: str) -> Any:
    path = shop["templates"] / "emails" / "weekly-picks.mjml"
    path.write_text(source)
    return find_campaign(shop["templates"], "weekly-picks")


def send(shop: dict[str, Any], definition: Any, **kwargs: Any) -> Any:
    return run_campaign(
        shop["store"], shop["settings"], definition, recommender=StubRecommender(shop["store"]),
        sender="memory://", **kwargs,
    )  # fmt: skip


def subject(data: bytes) -> str:
    return str(make_header(decode_header(email.message_from_bytes(data)["Subject"])))


def ledger(store: Any, campaign: str = "weekly-picks") -> dict[int, tuple[str, str | None]]:
    return {r.customer_id: (r.status, r.variant) for r in store.campaign_recipients(campaign)}


# ---------------------------------------------------------------------------- front matter


def test_front_matter_variants_parse() -> None:
    d = parse_campaign(Path("weekly-picks.mjml"), campaign_source())
    assert [v.name for v in d.variants] == ["a", "b"] and d.ab_test is None
    assert d.variants[1].recommend.blocks == ("discover", "buy_again")
    assert d.variants[1].subject.endswith("something new for you")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            VARIANTS.replace("[discover, buy_again]", "[discover, best_sellers]"),
            "variant 'b' recommend.blocks: unknown block ['best_sellers']",
        ),
        (VARIANTS.replace("name: b", "name: a"), "variant 'a' is defined twice"),
        (VARIANTS.replace("weight: 1", "weight: 0"), "'weight' must be a positive number"),
        (
            VARIANTS.replace('content: {intro: "Something new, picked for you"}', "content: {other: x}"),
            "every variant must define the same content names",
        ),
        (
            VARIANTS.replace("    weight: 1\n", "    offer: {code: X, discount: 5%}\n"),
            "'offer' needs a kind with a promotion",
        ),
        ("test: {share: 0.2, wait: 4h}\n", "'test' needs 'variants:'"),
        (VARIANTS + "test: {share: 0.2, wait: 4h, metric: opens}\n", "test.metric must be one of"),
        (VARIANTS + "test: {share: 1.5, wait: 4h}\n", "test.share must be a share in (0, 1)"),
        (VARIANTS + "test: {share: 0.2}\n", "test.wait is required"),
    ],
)
def test_bad_variants_are_refused_naming_the_line(extra: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        parse_campaign(Path("weekly-picks.mjml"), campaign_source(extra))
    assert message in str(info.value)
    source = campaign_source(extra).splitlines()
    key = "test:" if message.startswith(("test.", "'test'")) else "variants:"
    line = next(i for i, text in enumerate(source, start=1) if text.startswith(key))
    assert str(info.value).startswith(f"weekly-picks.mjml:{line}: ")  # the file and the key's line


def test_lint_fails_the_variant_that_uses_an_undefined_variable(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    settings = shop_settings(tmp_path, templates_dir=str(templates))
    path = templates / "emails" / "weekly-picks.mjml"
    path.write_text(campaign_source())
    assert lint_campaign(path, settings) == []
    path.write_text(campaign_source(VARIANTS.replace("something new for you", "{{ coupon_code }} for you")))
    problems = [p for p in lint_campaign(path, settings) if "variant" in p]
    assert len(problems) == 1 and "variant 'b'" in problems[0] and "coupon_code" in problems[0]


# ---------------------------------------------------------------------------- sending


def test_each_recipient_gets_their_deterministic_variant_and_the_holdout_none(shop: dict[str, Any]) -> None:
    definition = write_campaign(shop, campaign_source())
    summary = send(shop, definition, run_key="r1")
    assert summary.sent > 100
    rows = ledger(shop["store"])
    sent = {cid: v for cid, (status, v) in rows.items() if status == "sent"}
    assert all(v is None for status, v in rows.values() if status == "holdout") and summary.holdout > 0
    assert all(v == assign_variant("weekly-picks", cid, definition.variants) for cid, v in sent.items())
    assert 0.35 < list(sent.values()).count("a") / len(sent) < 0.65
    by_address = {m.rcpt_to: m for m in memory.outbox()}
    for cid, variant in list(sent.items())[:40]:
        customer = shop["store"].customers_by_ids([cid])[cid]
        data = by_address[customer.email].data
        html = email.message_from_bytes(data).get_payload()[1].get_payload(decode=True).decode()
        if variant == "b":
            assert subject(data).endswith("something new for you") and "Something new, picked for you" in html
        else:
            assert subject(data).endswith("new picks for you") and "A few favourites to stock up on" in html
    again = send(shop, definition, run_key="r1")
    assert again.status == RunStatus.COMPLETED and len(memory.outbox()) == summary.sent  # nothing twice


class WallClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_test_then_winner_is_one_resumable_run(
    shop: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    store = shop["store"]
    source = campaign_source(VARIANTS + "test: {share: 0.4, wait: 2h, metric: click_rate}\n")
    definition = write_campaign(shop, source)
    clock = WallClock(datetime(2026, 11, 30, 9, 0, tzinfo=UTC))
    monkeypatch.setattr(abtest, "wall_clock", clock)

    first = send(shop, definition, run_key="ab")
    assert first.status == RunStatus.DEFERRED and "winner is picked after 2026-11-30 11:00:00" in (
        first.reason or ""
    )
    assert first.next_attempt_at == "2026-11-30 11:01"  # the scheduler's retry time
    rows = ledger(store)
    tested = {cid for cid, (status, _v) in rows.items() if status == "sent"}
    assert tested and all(in_test_share("weekly-picks", cid, 0.4) for cid in rows)
    run = store.get_run("ab", "weekly-picks")
    assert store.run_phase(run.id)[0] == "waiting"

    # too early: nothing more is sent
    clock.now += timedelta(hours=1)
    early = send(shop, definition, run_key="ab")
    assert early.status == RunStatus.DEFERRED and len(memory.outbox()) == len(tested)

    # people click through the real /c/ endpoint an hour after the send: everyone in B, a few in A
    import re
    import warnings
    from urllib.parse import urlsplit

    from campaigns.web.public import create_public_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    app = create_public_app(store, shop["settings"])
    app.app.state.clicks.clock = lambda: datetime.now(UTC) + timedelta(hours=1)
    emails = {c.email: cid for cid, c in store.customers_by_ids(list(rows)).items()}
    with TestClient(app, base_url="https://shop.example.test") as client:
        for message in memory.outbox():
            cid = emails[message.rcpt_to]
            if rows[cid][1] == "b" or cid % 9 == 0:
                html = next(
                    p.get_payload(decode=True).decode()
                    for p in email.message_from_bytes(message.data).walk()
                    if p.get_content_type() == "text/html"
                )
                link = re.search(r'href="(https://shop\.example\.test/r/c/[^"]+)"', html)
                assert link is not None
                path = urlsplit(link.group(1)).path.removeprefix("/r")
                got = client.get(path, headers={"User-Agent": BROWSER}, follow_redirects=False)
                assert got.status_code == 302
    clicks = store.clicks("weekly-picks")
    assert clicks and all(c.human for c in clicks) and {c.variant for c in clicks} <= {"a", "b"}
    clock.now += timedelta(hours=2)
    done = send(shop, definition, run_key="ab")
    assert done.status == RunStatus.COMPLETED
    phase, decision = store.run_phase(run.id)
    assert phase == "winner" and decision["winner"] == "b" and decision["decided"] is True
    final = ledger(store)
    rest = {cid: v for cid, (status, v) in final.items() if status == "sent" and cid not in tested}
    assert rest and set(rest.values()) == {"b"}  # the winner to everyone outside the test
    assert len(memory.outbox()) == sum(1 for s, _ in final.values() if s == "sent")  # exactly once
    addresses = [m.rcpt_to for m in memory.outbox()]
    assert len(addresses) == len(set(addresses))
    assert send(shop, definition, run_key="ab").reason is not None and len(memory.outbox()) == len(addresses)

    url = store.engine.url.render_as_string(hide_password=False)
    settings_file = shop["templates"].parent / "empty.toml"
    settings_file.write_text("")
    monkeypatch.setenv("RETAIN_CONFIG", str(settings_file))
    assert main(["--db", url, "run", "show", "ab", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["phase"] == "winner" and shown["decision"]["winner"] == "b"
    assert main(["--db", url, "run", "show", "ab"]) == 0
    assert "A/B phase: winner" in capsys.readouterr().out


def test_without_a_clear_winner_the_default_is_sent_and_the_decision_says_so(
    shop: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    definition = write_campaign(
        shop, campaign_source(VARIANTS + "test: {share: 0.3, wait: 1h, default: b}\n")
    )
    clock = WallClock(datetime(2026, 11, 30, 9, 0, tzinfo=UTC))
    monkeypatch.setattr(abtest, "wall_clock", clock)
    send(shop, definition, run_key="ab")
    clock.now += timedelta(hours=2)
    assert send(shop, definition, run_key="ab").status == RunStatus.COMPLETED
    _, decision = shop["store"].run_phase(shop["store"].get_run("ab", "weekly-picks").id)
    assert decision["winner"] == "b" and decision["decided"] is False
    assert "sending the default variant b" in decision["reason"]


def test_the_scheduler_runs_the_phases(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scheduled fire sends the test share and asks for a retry at the decision time; the retry sends the rest."""
    from campaigns.scheduling import jobs
    from campaigns.scheduling.jobs import SchedulerContext, run_scheduled
    from campaigns.store import Store
    from tests.scheduling_fixtures import follow_up, make_templates, settings_for, write_people

    fire = datetime(2024, 3, 20, 9, 0, tzinfo=UTC)
    source = follow_up("ab", '{cron: "0 9 * * *", timezone: Europe/London}').replace(
        "marketing: false\n",
        "marketing: false\nvariants:\n  - {name: a}\n  - {name: b, subject: 'Thanks again'}\n"
        "test: {share: 0.5, wait: 3h, metric: uplift}\n",
    )
    templates = make_templates(tmp_path, {"ab": source})
    settings = settings_for(tmp_path, db_url, templates)
    store = Store.open(db_url)
    write_people(store, {f"p{i}": "Europe/London" for i in range(12)})
    memory.clear()

    class Recorder:
        def __init__(self) -> None:
            self.added: list[dict[str, Any]] = []

        def add_job(self, func: str, trigger: Any, **kw: Any) -> None:
            self.added.append({"trigger": trigger, **kw})

    scheduler = Recorder()
    clock = WallClock(datetime(2026, 11, 30, 9, 0, tzinfo=UTC))
    monkeypatch.setattr(abtest, "wall_clock", clock)
    jobs.bind(
        SchedulerContext(settings, store, clock=lambda: fire + timedelta(minutes=5), scheduler=scheduler)
    )
    try:
        first = run_scheduled("ab", None, fire_times=[fire])
        assert first.summary is not None and first.summary.status == RunStatus.DEFERRED
        tested = len(memory.outbox())
        assert 0 < tested < 12
        [retry] = scheduler.added
        assert retry["trigger"].run_date == datetime(2026, 11, 30, 12, 1, tzinfo=UTC)
        clock.now = datetime(2026, 11, 30, 12, 1, tzinfo=UTC)
        second = run_scheduled("ab", None, **retry["kwargs"])
        assert second.summary is not None and second.summary.status == RunStatus.COMPLETED
        assert sorted(m.rcpt_to for m in memory.outbox()) == sorted(f"p{i}@example.test" for i in range(12))
        phase, decision = store.run_phase(store.get_run(first.run_key, "ab").id)
        assert phase == "winner" and decision["metric"] == "uplift" and decision["winner"] in {"a", "b"}
    finally:
        jobs.bind(None)
        store.close()


def test_a_crash_in_the_winner_phase_resumes_that_phase(
    shop: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    from campaigns.kinds import Member

    store = shop["store"]
    definition = write_campaign(shop, campaign_source(VARIANTS + "test: {share: 0.4, wait: 1h}\n"))
    clock = WallClock(datetime(2026, 11, 30, 9, 0, tzinfo=UTC))
    monkeypatch.setattr(abtest, "wall_clock", clock)
    send(shop, definition, run_key="ab")
    tested = len(memory.outbox())
    clock.now += timedelta(hours=2)
    rows = ledger(store)
    untested = [cid for cid in store.customers_by_ids(range(1, 400)) if cid not in rows][:25]

    def crashing() -> Any:
        people = store.customers_by_ids(untested)
        yield [Member(people[cid]) for cid in untested[:10]]
        raise RuntimeError("the process died")

    with pytest.raises(RuntimeError):
        send(shop, definition, run_key="ab", members=crashing())
    run = store.get_run("ab", "weekly-picks")
    assert run.status == RunStatus.FAILED and store.run_phase(run.id)[0] == "winner"
    after_crash = len(memory.outbox())
    assert after_crash > tested
    done = send(shop, definition, run_key="ab")
    assert done.status == RunStatus.COMPLETED
    addresses = [m.rcpt_to for m in memory.outbox()]
    assert len(addresses) == len(set(addresses))  # nobody twice across the three processes
    _, decision = store.run_phase(run.id)
    winner = decision["winner"]
    final = ledger(store)
    assert all(final[cid][1] == winner for cid in untested[:10] if final[cid][0] == "sent")
