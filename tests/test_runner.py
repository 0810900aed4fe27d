"""The runner end to end: real segments, a trained model, real templates, the memory sender and a
real SMTP sink on loopback; exactly once per run key on SQLite and PostgreSQL."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from campaigns.definition import find_campaign
from campaigns.errors import RenderError
from campaigns.runner import run_campaign
from campaigns.senders import memory
from campaigns.training import load_recommender, train_model

from .smtp_sink import FaultPlan, SmtpSink
from .synthetic import make_shop, shop_settings


@pytest.fixture
def shop(store: Any, tmp_path: Path) -> dict[str, Any]:
    settings = shop_settings(tmp_path)
    emails = make_shop(store, customers=60)
    train_model(store, settings)
    memory.clear()
    return {
        "store": store,
        "settings": settings,
        "emails": emails,
        "recommender": load_recommender(settings, store),
    }


def send(shop: dict[str, Any], campaign: str = "weekly-picks", **kwargs: Any) -> Any:
    s = shop["settings"]
    definition = find_campaign(Path(s.templates_dir), campaign)
    kwargs.setdefault("recommender", shop["recommender"])
    kwargs.setdefault("sender", "memory://")
    return run_campaign(shop["store"], s, definition, **kwargs)


def test_every_eligible_customer_gets_exactly_one_message(shop: dict[str, Any]) -> None:
    summary = send(shop, run_key="r1")
    sent = list(memory.outbox())
    assert summary.status == "completed"
    assert summary.sent == len(sent) > 0
    assert summary.sent + summary.holdout + sum(summary.skipped.values()) == 60
    assert summary.holdout in range(1, 16)  # ~10% of 60, deterministic per campaign + customer
    assert max(Counter(m.rcpt_to for m in sent).values()) == 1
    # the same key again resumes a completed run: nothing is sent twice
    again = send(shop, run_key="r1")
    assert again.sent == summary.sent and len(memory.outbox()) == len(sent)
    # a new key is a new run (frequency cap is off in this shop)
    third = send(shop, run_key="r2")
    assert third.sent == summary.sent
    assert len(memory.outbox()) == 2 * len(sent)


def test_holdout_is_stable_and_recorded(shop: dict[str, Any]) -> None:
    first = send(shop, run_key="a")
    second = send(shop, run_key="b")
    assert first.holdout == second.holdout  # same campaign, same customers -> same control group


def test_dry_run_sends_nothing_and_reports(shop: dict[str, Any], tmp_path: Path) -> None:
    report = tmp_path / "report.csv"
    summary = send(shop, dry_run=True, report_path=report)
    assert memory.outbox() == []
    assert summary.would_send > 0 and summary.to_json()["would_send"] == summary.would_send
    rows = report.read_text().splitlines()
    assert rows[0].startswith("customer_id,email,status,reason,subject,top_products")
    assert sum(1 for r in rows if ",would_send," in r) == summary.would_send
    assert all(not r.endswith(",") for r in rows if ",would_send," in r)  # top products are listed
    assert store_runs(shop) == []


def store_runs(shop: dict[str, Any]) -> list[Any]:
    return shop["store"].list_runs()


def test_suppressed_customers_are_never_sent(shop: dict[str, Any]) -> None:
    store = shop["store"]
    victims = shop["emails"][:10]
    for email in victims:
        store.suppress(email, "unsubscribed")
    send(shop, run_key="s")
    assert not {m.rcpt_to for m in memory.outbox()} & set(victims)


def test_hard_bounces_are_recorded_and_suppressed(store: Any, tmp_path: Path) -> None:
    settings = shop_settings(tmp_path, holdout_share=0.0)
    make_shop(store, customers=30, bounce_every=5)
    train_model(store, settings)
    definition = find_campaign(Path(settings.templates_dir), "weekly-picks")
    with SmtpSink(FaultPlan(bounce_substring="bounce", tempfail_first=1)) as sink:
        summary = run_campaign(
            store,
            settings,
            definition,
            recommender=load_recommender(settings, store),
            sender=sink.dsn,
            run_key="b",
        )
        counts = sink.counts
    assert summary.failed == 6, summary.failures
    assert all(k.startswith("smtp_550") for k in summary.failures)
    assert summary.sent == 24
    assert sum(counts.values()) == 24 and max(counts.values()) == 1  # 4xx retried without duplicates
    assert store.suppressed_emails([f"bounce{i}@example.com" for i in range(0, 30, 5)]) == {
        f"bounce{i}@example.com" for i in range(0, 30, 5)
    }


def test_rejecting_server_pauses_the_run_and_resume_finishes(store: Any, tmp_path: Path) -> None:
    settings = shop_settings(tmp_path, holdout_share=0.0, max_consecutive_failures=5)
    make_shop(store, customers=40)
    train_model(store, settings)
    definition = find_campaign(Path(settings.templates_dir), "weekly-picks")
    rec = load_recommender(settings, store)
    with SmtpSink(FaultPlan(reject_all=421)) as sink:
        paused = run_campaign(store, settings, definition, recommender=rec, sender=sink.dsn, run_key="p")
        assert sum(sink.counts.values()) == 0
    assert paused.status == "paused" and "resume" in (paused.reason or "")
    # stopped instead of burning the list: nobody is marked failed, everyone waits for the resume
    assert paused.sent == 0 and paused.failed == 0
    assert len(store.customers_in_state(store.get_run("p").id, ("claimed",))) == 40
    with SmtpSink(FaultPlan()) as sink:
        done = run_campaign(store, settings, definition, recommender=rec, sender=sink.dsn, run_key="p")
        counts = sink.counts
    assert done.status == "completed"
    assert done.sent == 40 and sum(counts.values()) == 40
    assert max(counts.values()) == 1


def test_template_error_stops_before_sending(shop: dict[str, Any], tmp_path: Path) -> None:
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(Path(shop["settings"].templates_dir), templates)
    page = templates / "emails" / "weekly-picks.mjml"
    page.write_text(
        page.read_text().replace("{% endblock %}", "{{ customer.no_such_field }}{% endblock %}", 1)
    )
    s = shop["settings"].with_overrides(templates_dir=str(templates))
    definition = find_campaign(templates, "weekly-picks")
    with pytest.raises(RenderError, match="no_such_field"):
        run_campaign(
            shop["store"], s, definition, recommender=shop["recommender"], sender="memory://", run_key="t"
        )
    assert memory.outbox() == []
    assert shop["store"].get_run("t").status == "failed"
