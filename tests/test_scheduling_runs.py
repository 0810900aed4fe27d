"""Scheduled runs through the real runner (memory sender): recipient-local batches, missed runs,
once per order under racing ticks, failures retried, a stop leaving the run resumable."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from apscheduler.triggers.cron import CronTrigger

from campaigns.errors import SchedulerError
from campaigns.scheduling import jobs
from campaigns.scheduling.jobs import SchedulerContext, run_scheduled, train_scheduled
from campaigns.scheduling.plan import FUNC_RUN, run_key
from campaigns.scheduling.service import build_scheduler, run_forever
from campaigns.senders import memory
from campaigns.store import Store
from tests.scheduling_fixtures import follow_up, make_templates, settings_for, write_people

FIRE = datetime(2024, 3, 20, 9, 0, tzinfo=UTC)


class FakeScheduler:
    """Records the retry jobs a run asks for."""

    def __init__(self) -> None:
        self.added: list[dict[str, Any]] = []

    def add_job(self, func: str, trigger: Any, **kw: Any) -> None:
        self.added.append({"func": func, "trigger": trigger, **kw})


@pytest.fixture
def setup(tmp_path: Path, db_url: str) -> Iterator[tuple[SchedulerContext, Any]]:
    templates = make_templates(
        tmp_path,
        {
            "thanks": follow_up("thanks"),
            "boom": follow_up("boom").replace("{{ order.number }}", "{{ order.no_such_field }}"),
            "picks": "---\nname: picks\nkind: recommendation\nsubject: Hi\nsegment: active-buyers\n"
            'schedule: "0 9 * * MON"\n---\n<mjml><mj-body></mj-body></mjml>\n',
        },
    )
    settings = settings_for(tmp_path, db_url, templates)
    store = Store.open(db_url)
    write_people(store)
    memory.clear()
    ctx = SchedulerContext(
        settings, store, clock=lambda: FIRE + timedelta(hours=1), scheduler=FakeScheduler()
    )
    jobs.bind(ctx)
    try:
        yield ctx, store
    finally:
        jobs.bind(None)
        store.close()


def _rcpts() -> list[str]:
    return sorted(m.rcpt_to for m in memory.outbox())


def test_recipient_local_batches_per_zone_sent_once(setup: tuple[SchedulerContext, Any]) -> None:
    ctx, store = setup
    out = run_scheduled("thanks", "Europe/Paris", fire_times=[FIRE])
    assert out.status == "sent" and out.run_key == "sched:2024-03-20T10:00@Europe/Paris"
    assert _rcpts() == ["paris@example.test"]
    run_scheduled("thanks", "America/New_York", fire_times=[FIRE])
    assert _rcpts() == ["ny@example.test", "paris@example.test"]
    # no timezone, or an unknown one: the shop's zone
    run_scheduled("thanks", "Europe/London", fire_times=[FIRE])
    assert _rcpts() == ["bad@example.test", "nozone@example.test", "ny@example.test", "paris@example.test"]
    # the same fire again, or a later one: nothing twice (same run key; one follow-up per order)
    again = run_scheduled("thanks", "Europe/Paris", fire_times=[FIRE])
    later = run_scheduled("thanks", "Europe/Paris", fire_times=[FIRE + timedelta(minutes=30)])
    assert again.summary.sent == 1 and later.summary.sent == 0
    assert len(memory.outbox()) == 4
    assert store.get_run(out.run_key, "thanks").scheduled_for == FIRE.replace(tzinfo=None)


def test_missed_run_beyond_lateness_is_recorded_as_skipped(setup: tuple[SchedulerContext, Any]) -> None:
    ctx, store = setup
    old = FIRE - timedelta(days=2)
    out = run_scheduled("thanks", "Europe/Paris", fire_times=[old])
    assert out.status == "skipped" and memory.outbox() == []
    run = store.get_run(run_key(old, "Europe/Paris"), "thanks")
    assert run.status == "skipped"
    assert "2d 1h late, beyond max_lateness 6h" in (run.reason or "")
    # a week of missed fires: the one within lateness is sent once, the rest recorded
    fires = [FIRE - timedelta(days=d) for d in range(3, 0, -1)] + [FIRE]
    out = run_scheduled("thanks", "Europe/Paris", fire_times=fires)
    assert out.status == "sent" and out.skipped == 3 and _rcpts() == ["paris@example.test"]
    statuses = {r.key: r.status for r in store.list_runs(campaign="thanks")}
    assert statuses[run_key(FIRE, "Europe/Paris")] == "completed"
    assert sum(s == "skipped" for s in statuses.values()) == 3  # days 3, 2 (recorded above) and 1


def test_racing_ticks_send_one_follow_up_per_order(setup: tuple[SchedulerContext, Any]) -> None:
    ctx, store = setup
    barrier = threading.Barrier(4)
    results: list[Any] = []

    def tick(i: int) -> None:
        barrier.wait()
        results.append(run_scheduled("thanks", None, fire_times=[FIRE + timedelta(minutes=i)]))

    threads = [threading.Thread(target=tick, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 4 and {r.status for r in results} == {"sent"}
    assert _rcpts() == ["bad@example.test", "nozone@example.test", "ny@example.test", "paris@example.test"]
    assert sum(r.summary.sent for r in results) == 4


def test_failing_run_is_logged_retried_and_given_up(
    setup: tuple[SchedulerContext, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ctx, store = setup
    out = run_scheduled("boom", None, fire_times=[FIRE])
    assert out.status == "failed" and "no_such_field" in (out.reason or "")
    assert any("campaign boom run sched:2024-03-20T09:00Z failed" in r.getMessage() for r in caplog.records)
    retry = ctx.scheduler.added[-1]  # type: ignore[union-attr]
    assert retry["func"] == FUNC_RUN and retry["kwargs"] == {"retry_of": FIRE.isoformat(), "attempt": 1}
    assert retry["trigger"].run_date == FIRE + timedelta(hours=1, minutes=5)
    # the last attempt gives up with the command that resumes it
    n = len(ctx.scheduler.added)  # type: ignore[union-attr]
    assert run_scheduled("boom", None, retry_of=FIRE.isoformat(), attempt=3).status == "failed"
    assert len(ctx.scheduler.added) == n  # type: ignore[union-attr]
    assert any("giving up after 3 retries" in r.getMessage() for r in caplog.records)
    # another campaign is unaffected
    assert run_scheduled("thanks", None, fire_times=[FIRE]).summary.sent == 4


def test_stop_leaves_the_run_resumable(setup: tuple[SchedulerContext, Any]) -> None:
    ctx, store = setup
    ctx.stopping.set()
    out = run_scheduled("thanks", None, fire_times=[FIRE])
    assert out.status == "stopped" and memory.outbox() == []
    run = store.get_run(run_key(FIRE, None), "thanks")
    assert run.status == "failed" and "resume" in (run.reason or "")
    retry = ctx.scheduler.added[-1]  # type: ignore[union-attr]
    assert retry["kwargs"] == {"retry_of": FIRE.isoformat(), "attempt": 0}
    ctx.stopping.clear()
    resumed = run_scheduled("thanks", None, **retry["kwargs"])
    assert resumed.run_key == run.key and resumed.summary.sent == 4


def test_removed_campaign_and_missing_model_are_clear(
    setup: tuple[SchedulerContext, Any], caplog: pytest.LogCaptureFixture
) -> None:
    ctx, store = setup
    gone = run_scheduled("deleted", None, fire_times=[FIRE])
    assert gone.status == "missing" and "run `retain schedule sync`" in (gone.reason or "")
    picks = run_scheduled("picks", None, fire_times=[FIRE])
    assert picks.status == "skipped" and "no usable recommender model" in (picks.reason or "")
    assert store.get_run(run_key(FIRE, None), "picks").status == "skipped"
    trained = train_scheduled(fire_times=[FIRE - timedelta(days=1)])
    assert trained.status == "skipped" and "beyond max_lateness" in (trained.reason or "")


def _wait(cond: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def test_scheduler_runs_missed_jobs_from_its_store(setup: tuple[SchedulerContext, Any]) -> None:
    """Jobs missed while 'down' (past next_run_time): within lateness sent, beyond skipped, failure re-queued."""
    ctx, store = setup
    real = datetime.now(UTC)
    ctx.clock = lambda: datetime.now(UTC)
    sched = build_scheduler(ctx)
    sched.start(paused=True)
    try:
        # a daily time far from now, so no regular fire falls inside the hour we pretend to have missed
        daily = CronTrigger(hour=(real + timedelta(hours=12)).hour, timezone="UTC")
        sched.add_job(
            FUNC_RUN,
            daily,
            args=("thanks", None),
            id="campaign:thanks",
            next_run_time=real - timedelta(hours=1),
        )
        sched.add_job(
            FUNC_RUN,
            daily,
            args=("boom", None),
            id="campaign:boom",
            next_run_time=real - timedelta(minutes=5),
        )
        sched.resume()
        assert _wait(
            lambda: (
                len(memory.outbox()) == 4
                and sched.get_job(f"retry:boom@-:{(real - timedelta(minutes=5)).isoformat()}")
            )
        )
        assert _wait(lambda: sched.get_job("campaign:thanks").next_run_time > real)
    finally:
        sched.shutdown(wait=True)
    runs = {r.campaign: r for r in store.list_runs()}
    assert runs["thanks"].status == "completed" and runs["boom"].status == "failed"


def test_run_forever_refuses_a_second_scheduler_and_stops_cleanly(
    setup: tuple[SchedulerContext, Any],
) -> None:
    ctx, store = setup
    jobs.bind(None)
    stop = threading.Event()
    ready = threading.Event()
    reports: list[Any] = []
    errors: list[BaseException] = []

    def first() -> None:
        try:
            run_forever(ctx.settings, stop=stop, on_sync=reports.append, on_ready=lambda _s: ready.set(),
                        heartbeat_seconds=0.05, install_signals=False)  # fmt: skip
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=first)
    t.start()
    try:
        assert ready.wait(20), errors
        assert reports and {a.split(": ")[0] for a in reports[0].added} >= {
            "campaign:thanks@Europe/Paris",
            "train",
        }
        with pytest.raises(SchedulerError, match="another scheduler is already running"):
            run_forever(ctx.settings, stop=threading.Event(), install_signals=False)
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive() and errors == []
    assert store.lock_holder("scheduler") is None
