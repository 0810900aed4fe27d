"""Scheduling without sending: triggers across DST, the missed-run policy, zones, sync and its diff, CLI."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from campaigns.cli import main
from campaigns.definition import ScheduleSpec
from campaigns.scheduling.plan import ONCE_AT, build_trigger, campaign_jobs, desired_jobs, run_key
from campaigns.scheduling.policy import decide_fires, human_duration
from campaigns.scheduling.service import list_jobs, open_scheduler
from campaigns.scheduling.sync import load_definitions, sync_jobs
from campaigns.scheduling.zones import audience_zones, effective_zone
from tests.scheduling_fixtures import follow_up, make_templates, settings_for, write_people

UTC_ = ZoneInfo("UTC")


def _fires(trigger: object, start: datetime, n: int) -> list[datetime]:
    out: list[datetime] = []
    prev = None
    now = start
    for _ in range(n):
        nxt = trigger.get_next_fire_time(prev, now)  # type: ignore[attr-defined]
        out.append(nxt.astimezone(UTC))
        prev, now = nxt, nxt + timedelta(seconds=1)
    return out


# ------------------------------------------------------------------ triggers across DST


def test_daily_cron_keeps_local_time_across_spring_and_autumn_changes() -> None:
    spec = ScheduleSpec(cron="0 9 * * *")
    london = build_trigger(spec, "Europe/London")
    # Europe/London springs forward on 2024-03-31: 09:00 local is 09:00Z before, 08:00Z after
    got = _fires(london, datetime(2024, 3, 30, 0, 0, tzinfo=UTC), 3)
    assert got == [
        datetime(2024, 3, 30, 9, 0, tzinfo=UTC),
        datetime(2024, 3, 31, 8, 0, tzinfo=UTC),
        datetime(2024, 4, 1, 8, 0, tzinfo=UTC),
    ]
    # America/New_York falls back on 2024-11-03: 09:00 local is 13:00Z before, 14:00Z after
    ny = build_trigger(spec, "America/New_York")
    got = _fires(ny, datetime(2024, 11, 2, 0, 0, tzinfo=UTC), 2)
    assert got == [datetime(2024, 11, 2, 13, 0, tzinfo=UTC), datetime(2024, 11, 3, 14, 0, tzinfo=UTC)]


def test_weekly_cron_with_day_names_and_a_nonexistent_local_time() -> None:
    mondays = build_trigger(ScheduleSpec(cron="0 9 * * MON"), "Europe/Paris")
    got = _fires(mondays, datetime(2024, 3, 20, tzinfo=UTC), 2)
    assert [t.astimezone(ZoneInfo("Europe/Paris")).strftime("%a %H:%M") for t in got] == ["Mon 09:00"] * 2
    assert got == [datetime(2024, 3, 25, 8, 0, tzinfo=UTC), datetime(2024, 4, 1, 7, 0, tzinfo=UTC)]
    # 01:30 does not exist in London on 2024-03-31: that day is not fired twice, nor at a wrong hour
    night = _fires(
        build_trigger(ScheduleSpec(cron="30 1 * * *"), "Europe/London"), datetime(2024, 3, 30, tzinfo=UTC), 3
    )
    assert night == [
        datetime(2024, 3, 30, 1, 30, tzinfo=UTC),
        datetime(2024, 3, 31, 1, 30, tzinfo=UTC),  # 02:30 BST: the gap's time, once
        datetime(2024, 4, 1, 0, 30, tzinfo=UTC),
    ]


def test_interval_is_anchored_and_once_fires_at_nine_local() -> None:
    every6h = build_trigger(ScheduleSpec(interval=timedelta(hours=6), timezone="UTC"), "UTC")
    got = _fires(every6h, datetime(2024, 3, 20, 7, 13, tzinfo=UTC), 2)
    assert got == [datetime(2024, 3, 20, 12, 0, tzinfo=UTC), datetime(2024, 3, 20, 18, 0, tzinfo=UTC)]
    once = build_trigger(ScheduleSpec(once=date(2030, 11, 20)), "Asia/Tokyo")
    first = once.get_next_fire_time(None, datetime(2024, 1, 1, tzinfo=UTC))
    assert first == datetime.combine(date(2030, 11, 20), ONCE_AT, tzinfo=ZoneInfo("Asia/Tokyo"))
    assert once.get_next_fire_time(first, first + timedelta(seconds=1)) is None


def test_run_keys_name_the_local_wall_time_for_recipient_zones() -> None:
    fire = datetime(2024, 3, 25, 8, 0, tzinfo=UTC)
    assert run_key(fire, "Europe/Paris") == "sched:2024-03-25T09:00@Europe/Paris"
    assert run_key(fire, None) == "sched:2024-03-25T08:00Z"


# ------------------------------------------------------------------ missed-run policy


def test_policy_sends_within_lateness_once_and_skips_beyond_with_reason() -> None:
    t = datetime(2024, 3, 20, 9, 0, tzinfo=UTC)
    six_h = timedelta(hours=6)
    within = decide_fires([t], t + timedelta(hours=2), six_h)
    assert within.run_at == t and within.skipped == []
    beyond = decide_fires([t], t + timedelta(days=2, hours=1), six_h)
    assert beyond.run_at is None
    assert len(beyond.skipped) == 1
    assert "2d 1h late, beyond max_lateness 6h" in beyond.skipped[0][1]


def test_policy_coalesces_overlapping_fires_into_the_latest() -> None:
    t = datetime(2024, 3, 20, 9, 0, tzinfo=UTC)
    fires = [t - timedelta(days=1), t, t + timedelta(hours=1), t + timedelta(hours=2)]
    d = decide_fires(fires, t + timedelta(hours=3), timedelta(hours=6))
    assert d.run_at == t + timedelta(hours=2)
    reasons = dict(d.skipped)
    assert "beyond max_lateness" in reasons[t - timedelta(days=1)]
    assert reasons[t].startswith("coalesced into the run due 2024-03-20 11:00")
    assert len(d.skipped) == 3


def test_human_duration() -> None:
    assert human_duration(timedelta(minutes=45)) == "45m"
    assert human_duration(timedelta(days=1, minutes=5)) == "1d 5m"
    assert human_duration(timedelta(seconds=3)) == "3s"


# ------------------------------------------------------------------ zones and jobs


def test_zones_unknown_and_missing_fall_back_to_the_shop() -> None:
    zones, notes = audience_zones({"Europe/Paris": 2, None: 5, "": 1, "Mars/Olympus": 3}, "Europe/London")
    assert zones == ["Europe/London", "Europe/Paris"]
    assert notes == [
        "3 customer(s) have unknown timezone 'Mars/Olympus': they receive in the shop's (Europe/London)"
    ]
    assert effective_zone(None, "Europe/London") == "Europe/London"
    assert effective_zone("Mars/Olympus", "Europe/London") == "Europe/London"
    assert effective_zone("Asia/Tokyo", "Europe/London") == "Asia/Tokyo"


def test_recipient_cron_gets_one_job_per_zone_fixed_zone_one(tmp_path: Path) -> None:
    templates = make_templates(
        tmp_path,
        {
            "local": follow_up("local"),
            "fixed": follow_up("fixed", '{cron: "0 10 * * *", timezone: "Asia/Tokyo"}'),
            "tick": follow_up("tick").replace('schedule: {cron: "0 10 * * *", timezone: recipient}\n', ""),
        },
    )
    defs, problems, _ = load_definitions(templates)
    assert problems == []
    jobs = {j.id: j for j in desired_jobs(defs, ["Europe/Paris"], "Europe/London")}
    assert sorted(jobs) == [
        "campaign:fixed",
        "campaign:local@Europe/London",
        "campaign:local@Europe/Paris",
        "campaign:tick",
        "train",
    ]
    assert jobs["campaign:local@Europe/Paris"].args == ("local", "Europe/Paris")
    assert str(jobs["campaign:fixed"].trigger.timezone) == "Asia/Tokyo"
    assert "every 1:00:00" in jobs["campaign:tick"].name
    by_def = {d.name: d for d in defs}
    assert campaign_jobs(by_def["fixed"], ["Europe/Paris"], "Europe/London")[0].args == ("fixed", None)


# ------------------------------------------------------------------ sync


def test_sync_reports_added_changed_removed_and_survives_restart(tmp_path: Path, store: object) -> None:
    templates = make_templates(tmp_path, {"a": follow_up("a"), "b": follow_up("b", '"0 9 * * MON"')})
    s = settings_for(tmp_path, store.engine.url.render_as_string(False), templates)  # type: ignore[attr-defined]
    write_people(store, {"paris": "Europe/Paris"})
    with open_scheduler(store, s) as sched:
        first = sync_jobs(sched, store, s)
        before = {r.id: r.next_run_time for r in list_jobs(sched)}
    assert [x.split(": ")[0] for x in first.added] == [
        "campaign:a@Europe/London",
        "campaign:a@Europe/Paris",
        "campaign:b@Europe/London",
        "campaign:b@Europe/Paris",
        "train",
    ]
    # a new scheduler on the same database (a restart) sees the same jobs and fire times; nothing changes
    with open_scheduler(store, s) as sched:
        assert {r.id: r.next_run_time for r in list_jobs(sched)} == before
        again = sync_jobs(sched, store, s)
    assert not again.has_changes and again.unchanged == 5
    # edit a's schedule, delete b
    (templates / "emails" / "a.mjml").write_text(follow_up("a", '{cron: "0 10 * * *", timezone: UTC}'))
    (templates / "emails" / "b.mjml").unlink()
    with open_scheduler(store, s) as sched:
        diff = sync_jobs(sched, store, s)
        ids = {r.id for r in list_jobs(sched)}
    assert [x.split(": ")[0] for x in diff.added] == ["campaign:a"]
    removed = "\n".join(diff.removed)
    assert "campaign 'b' was removed from" in removed
    assert "campaign:a@Europe/Paris" in removed and "its schedule or timezone changed" in removed
    assert ids == {"campaign:a", "train"}


def test_sync_reports_bad_templates_and_keeps_their_jobs(tmp_path: Path, sqlite_store: object) -> None:
    store = sqlite_store
    templates = make_templates(tmp_path, {"good": follow_up("good"), "cron": follow_up("cron")})
    s = settings_for(tmp_path, "", templates)
    with open_scheduler(store, s) as sched:
        sync_jobs(sched, store, s)
    (templates / "emails" / "cron.mjml").write_text(follow_up("cron", '"0 25 * * *"'))
    (templates / "emails" / "zone.mjml").write_text(
        follow_up("zone", '{cron: "0 9 * * *", timezone: Mars/Base}')
    )
    with open_scheduler(store, s) as sched:
        report = sync_jobs(sched, store, s)
        ids = {j.id for j in sched.get_jobs()}
    text = "\n".join(report.problems)
    assert "cron.mjml:5: bad cron '0 25 * * *'" in text
    assert "zone.mjml:5: unknown timezone 'Mars/Base'" in text
    assert "campaign:cron@Europe/London" in ids  # kept until fixed
    assert not report.has_changes


def test_cli_sync_and_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    templates = make_templates(tmp_path, {"a": follow_up("a"), "bad": follow_up("bad", '"61 9 * * *"')})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RETAIN_TEMPLATES_DIR", str(templates))
    db = f"sqlite:///{tmp_path / 'r.db'}"
    assert main(["--db", db, "schedule", "sync"]) == 1  # a bad template: reported, the rest synced
    printed = capsys.readouterr()
    assert "+ campaign:a@Europe/London" in printed.out
    assert "! " in printed.out and "bad.mjml" in printed.out and "Traceback" not in printed.err
    assert main(["--db", db, "schedule", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["id"] for r in rows} == {"campaign:a@Europe/London", "train"}
    first = datetime.fromisoformat(next(r for r in rows if r["id"].startswith("campaign:"))["next_run_time"])
    assert first.astimezone(ZoneInfo("Europe/London")).strftime("%H:%M") == "10:00"
    assert main(["--db", db, "schedule", "sync", "--dry-run"]) == 1
    assert "0 added, 0 changed, 0 removed, 2 unchanged (not applied)" in capsys.readouterr().out
