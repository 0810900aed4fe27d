"""Eligibility: address, suppression, consent, frequency cap, holdout, quiet hours (SQLite and PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from campaigns.config import Settings
from campaigns.eligibility import (
    holdout_bucket,
    in_holdout,
    is_valid_address,
    judge_batch,
    parse_quiet_hours,
    quiet_until,
)
from campaigns.errors import ConfigError
from campaigns.models import Delivery, Run
from campaigns.store import Store
from campaigns.store.records import CustomerIn, CustomerRecord, ImportBatch

NOON = datetime(2024, 3, 6, 12, 0)  # a Wednesday, 12:00 UTC = 12:00 in London (winter time)
QUIET_OFF = Settings(quiet_hours="", frequency_cap=0)


def customer(cid: int, email: str | None = "x@shop.example.com", **kw: object) -> CustomerRecord:
    base = CustomerRecord(cid, f"c{cid}", email, None, None, None, None, True, "test", False)
    return replace(base, **kw)  # type: ignore[arg-type]


def seeded(store: Store, n: int) -> list[CustomerRecord]:
    batch = ImportBatch(source="generic")
    for i in range(n):
        batch.customers[f"c{i}"] = CustomerIn(f"c{i}", email=f"c{i}@shop.example.com", marketing_consent=True)
    store.write_import(batch)
    from sqlalchemy import select

    from campaigns.models import Customer
    from campaigns.store.catalog import customer_record

    with store.engine.connect() as conn:
        rows = conn.execute(select(Customer.__table__).order_by(Customer.__table__.c.id)).all()
    return [customer_record(r) for r in rows]


def record_sends(store: Store, customer_id: int, sent_ats: list[datetime], *, marketing: bool = True,
                 status: str = "sent") -> None:  # fmt: skip
    runs, deliveries = Run.__table__, Delivery.__table__
    with store.transaction() as conn:
        for n, at in enumerate(sent_ats):
            run_id = conn.execute(
                runs.insert().values(
                    campaign="other",
                    key=f"k{customer_id}-{n}-{status}-{marketing}-{at.isoformat()}",
                    status="completed",
                    started_at=at,
                    updated_at=at,
                )  # fmt: skip
            ).inserted_primary_key[0]
            conn.execute(
                deliveries.insert().values(
                    run_id=run_id,
                    campaign="other",
                    customer_id=customer_id,
                    status=status,
                    is_marketing=marketing,
                    created_at=at,
                    updated_at=at,
                    sent_at=at,
                    attempts=1,
                )  # fmt: skip
            )


@pytest.mark.parametrize(
    ("email", "ok"),
    [
        ("ann@shop.example.com", True),
        ("Ann.Lee+tag@Example.CO.UK", True),
        ("customer-12345@example.com", True),
        ("a@b.xn--p1ai", True),
        (None, False),
        ("", False),
        ("no-at-sign.example.com", False),
        ("two@@example.com", False),
        ("a@localhost", False),
        ("a@shop.invalid", False),
        ("a@printer.local", False),
        ("a@example", False),
        ("a@-bad-.com", False),
        ("a..b@example.com", False),
        (".a@example.com", False),
        ("a b@example.com", False),
        (" a@example.com", False),
        ("a@[127.0.0.1]", False),
        ("a@example.c", False),
        ("a@example..com", False),
        ("x" * 65 + "@example.com", False),
        ("ivy@bücher.example", True),  # IDN domain: valid in its IDNA form
        ("ivy@bücher..example", False),
        ("ïvy@example.com", False),  # a non-ASCII local part needs SMTPUTF8, which the senders do not speak
    ],
)
def test_address_validity(email: str | None, ok: bool) -> None:
    assert is_valid_address(email) is ok


def test_holdout_is_deterministic_and_near_its_share() -> None:
    assert holdout_bucket("winback", 42) == holdout_bucket("winback", 42)
    assert holdout_bucket("winback", 42) != holdout_bucket("promo", 42)
    # sha256 of "winback\x0042": fixed across machines and Python runs (no PYTHONHASHSEED effect)
    assert holdout_bucket("winback", 42) == pytest.approx(
        int.from_bytes(__import__("hashlib").sha256(b"winback\x0042").digest()[:8], "big") / 2**64
    )
    share = sum(in_holdout("winback", i, 0.10) for i in range(20_000)) / 20_000
    assert 0.09 < share < 0.11
    assert not any(in_holdout("winback", i, 0.0) for i in range(1000))


def test_quiet_hours_across_midnight_and_timezones() -> None:
    london, tokyo = ZoneInfo("Europe/London"), ZoneInfo("Asia/Tokyo")
    hours = parse_quiet_hours("21-8")
    assert hours == (21, 8)
    assert quiet_until(NOON, london, hours) is None
    # 22:30 UTC in London (winter, UTC+0) -> quiet until 08:00 the next day
    assert quiet_until(datetime(2024, 3, 6, 22, 30), london, hours) == datetime(2024, 3, 7, 8, 0)
    # 03:00 -> same day 08:00
    assert quiet_until(datetime(2024, 3, 6, 3, 0), london, hours) == datetime(2024, 3, 6, 8, 0)
    # 12:00 UTC is 21:00 in Tokyo -> quiet until 08:00 JST next day = 23:00 UTC today
    assert quiet_until(NOON, tokyo, hours) == datetime(2024, 3, 6, 23, 0)
    # summer time: 07:30 UTC = 08:30 BST -> not quiet; 06:30 UTC = 07:30 BST -> until 07:00 UTC
    assert quiet_until(datetime(2024, 7, 1, 7, 30), london, hours) is None
    assert quiet_until(datetime(2024, 7, 1, 6, 30), london, hours) == datetime(2024, 7, 1, 7, 0)
    # a daytime window that does not wrap
    assert quiet_until(NOON, london, (12, 14)) == datetime(2024, 3, 6, 14, 0)
    assert parse_quiet_hours("") is None and parse_quiet_hours("5-5") is None
    with pytest.raises(ConfigError, match="quiet_hours"):
        parse_quiet_hours("9pm-8am")


def test_each_reason_in_order(store: Store) -> None:
    people = seeded(store, 7)
    a, b, c, d, e, f, g = people
    store.suppress(b.email or "", "unsubscribed", customer_id=b.id)
    record_sends(store, d.id, [NOON - timedelta(days=1), NOON - timedelta(days=2)])
    batch = [
        replace(a, email="not-an-address"),
        replace(b, email=(b.email or "").upper()),  # suppression is case-insensitive
        replace(c, marketing_consent=False),
        d,
        e,
        replace(f, timezone="Asia/Tokyo"),  # 21:00 there
        replace(g, email=None),  # a basket file's customer: nobody to write to
    ]
    settings = Settings(frequency_cap=2, frequency_window_days=7, quiet_hours="21-8")
    verdicts = judge_batch(store, settings, batch, campaign="promo", now=NOON, holdout_share=0.0)
    assert [(v.customer.id, v.status, v.reason) for v in verdicts] == [
        (a.id, "skipped", "invalid_address"),
        (b.id, "skipped", "suppressed"),
        (c.id, "skipped", "no_consent"),
        (d.id, "skipped", "frequency_cap"),
        (e.id, "eligible", None),
        (f.id, "deferred", "quiet_hours"),
        (g.id, "skipped", "no_email"),
    ]
    assert verdicts[5].defer_until == datetime(2024, 3, 6, 23, 0)
    assert verdicts[4].defer_until is None


def test_frequency_cap_counts_only_recent_marketing_sends(store: Store) -> None:
    a, b, c, d = seeded(store, 4)
    old = NOON - timedelta(days=8)
    record_sends(store, a.id, [NOON - timedelta(hours=1)])  # 1 recent: under a cap of 2
    record_sends(store, b.id, [old, old, NOON - timedelta(days=6)])  # only 1 inside 7 days
    record_sends(store, c.id, [NOON, NOON], marketing=False)  # transactional: not counted
    record_sends(store, d.id, [NOON, NOON], status="failed")  # not sent: not counted
    settings = Settings(frequency_cap=2, frequency_window_days=7, quiet_hours="")
    verdicts = judge_batch(store, settings, [a, b, c, d], campaign="p", now=NOON, holdout_share=0.0)
    assert [v.status for v in verdicts] == ["eligible"] * 4
    record_sends(store, a.id, [NOON - timedelta(days=3)])
    verdicts = judge_batch(store, settings, [a, b], campaign="p", now=NOON, holdout_share=0.0)
    assert [v.reason for v in verdicts] == ["frequency_cap", None]
    # cap 0 = no cap; transactional mail is never capped
    assert judge_batch(store, replace(settings, frequency_cap=0), [a], campaign="p", now=NOON,
                       holdout_share=0.0)[0].status == "eligible"  # fmt: skip
    assert judge_batch(store, settings, [a], campaign="p", now=NOON, holdout_share=0.0,
                       marketing=False)[0].status == "eligible"  # fmt: skip


def test_holdout_only_among_otherwise_eligible(store: Store) -> None:
    people = seeded(store, 200)
    for p in people[:50]:
        store.suppress(p.email or "", "hard_bounce", customer_id=p.id)
    verdicts = judge_batch(store, QUIET_OFF, people, campaign="winback", now=NOON, holdout_share=0.3)
    by_status: dict[str, set[int]] = {}
    for v in verdicts:
        by_status.setdefault(v.status, set()).add(v.customer.id)
    suppressed_ids = {p.id for p in people[:50]}
    assert by_status["skipped"] == suppressed_ids  # suppressed stay suppressed, never "holdout"
    expected_holdout = {p.id for p in people[50:] if holdout_bucket("winback", p.id) < 0.3}
    assert by_status["holdout"] == expected_holdout
    assert 20 < len(expected_holdout) < 70
    assert by_status["eligible"] == {p.id for p in people[50:]} - expected_holdout
    again = judge_batch(store, QUIET_OFF, people, campaign="winback", now=NOON, holdout_share=0.3)
    assert again == verdicts
    with pytest.raises(ConfigError):
        judge_batch(store, QUIET_OFF, people, campaign="winback", now=NOON, holdout_share=1.0)


def test_consent_rules(store: Store) -> None:
    a, b = seeded(store, 2)
    refused = replace(a, marketing_consent=False, consent_source="checkout")
    unknown = replace(b, marketing_consent=False, consent_source=None)
    strict = judge_batch(store, QUIET_OFF, [refused, unknown], campaign="p", now=NOON, holdout_share=0.0)
    assert [v.reason for v in strict] == ["no_consent", "no_consent"]
    soft = replace(QUIET_OFF, soft_opt_in=True)
    verdicts = judge_batch(store, soft, [refused, unknown], campaign="p", now=NOON, holdout_share=0.0)
    assert [v.reason for v in verdicts] == ["no_consent", None]  # a recorded refusal always wins
    transactional = judge_batch(store, QUIET_OFF, [refused], campaign="p", now=NOON, holdout_share=0.0,
                                marketing=False)  # fmt: skip
    assert transactional[0].status == "eligible"


def test_unknown_customer_timezone_falls_back_to_shop_zone(store: Store) -> None:
    [a] = seeded(store, 1)
    late = datetime(2024, 3, 6, 22, 0)
    settings = Settings(quiet_hours="21-8", frequency_cap=0)
    [v] = judge_batch(store, settings, [replace(a, timezone="Mars/Olympus")], campaign="p", now=late,
                      holdout_share=0.0)  # fmt: skip
    assert (v.status, v.defer_until) == ("deferred", datetime(2024, 3, 7, 8, 0))


def test_suppression_store(store: Store) -> None:
    assert store.suppress(" Ann@Example.com ", "unsubscribed", campaign="promo", detail="one-click") is True
    assert store.suppress("ann@example.com", "hard_bounce") is False  # first reason kept
    assert store.is_suppressed("ANN@example.com")
    assert not store.is_suppressed("bob@example.com")
    assert store.suppressed_emails(["ann@EXAMPLE.com", "bob@example.com", None]) == {"ann@example.com"}
    assert store.suppression_counts() == {"unsubscribed": 1}
    with pytest.raises(ValueError, match="unknown suppression reason"):
        store.suppress("x@example.com", "bored")
    with pytest.raises(ValueError, match="empty"):
        store.suppress("  ", "manual")
    assert store.unsuppress("ann@example.com") and not store.is_suppressed("ann@example.com")
    many = [f"u{i}@example.com" for i in range(2000)]
    for address in many[::500]:
        store.suppress(address, "complaint")
    assert store.suppressed_emails(many) == set(many[::500])


def test_record_event(store: Store) -> None:
    first = store.record_event("unsubscribe", campaign="promo", payload={"via": "one-click"})
    second = store.record_event("test_send", customer_id=None)
    assert second > first
    events = store.events()
    assert [e["kind"] for e in events] == ["test_send", "unsubscribe"]
    assert events[1]["payload"] == {"via": "one-click"}
    assert [e["id"] for e in store.events("unsubscribe")] == [first]
