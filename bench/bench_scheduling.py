"""Scheduling benchmark: recipient-local batches against one plain run, and sync against raw add_job.

1. The same 7-day follow-up audience (N customers over Z timezones) sent once as a single run
   (baseline) and as Z recipient-local zone runs (each filters the due orders to its zone).
2. Syncing C campaigns x Z zones into an empty job store (diff + add) against APScheduler's
   ``add_job`` of the same jobs (baseline), then a no-change re-sync (the scheduler does one every
   5 minutes).

Run: ``python -m bench scheduling``. SQLite in a temporary directory, memory sender.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from campaigns.scheduling import jobs
from campaigns.scheduling.jobs import SchedulerContext, run_scheduled
from campaigns.scheduling.service import open_scheduler
from campaigns.scheduling.sync import load_definitions, plan_jobs, sync_jobs
from campaigns.senders import memory
from campaigns.store import Store
from tests.scheduling_fixtures import follow_up, make_templates, settings_for, write_people

N = 1_000
ZONES = ["Europe/London", "Europe/Paris", "America/New_York", "America/Los_Angeles", "Asia/Tokyo",
         "Australia/Sydney", "Asia/Kolkata", "America/Sao_Paulo"]  # fmt: skip
CAMPAIGNS = 50
FIRE = datetime(2024, 3, 20, 9, 0, tzinfo=UTC)


def _send(tmp: Path, zoned: bool) -> tuple[float, int]:
    templates = make_templates(tmp, {"thanks": follow_up("thanks")})
    db = f"sqlite:///{tmp / ('z' if zoned else 'p')}.db"
    store = Store.open(db)
    write_people(store, {f"c{i}": ZONES[i % len(ZONES)] for i in range(N)})
    memory.clear()
    jobs.bind(
        SchedulerContext(settings_for(tmp, db, templates), store, clock=lambda: FIRE + timedelta(minutes=1))
    )
    t = time.perf_counter()
    for zone in ZONES if zoned else [None]:
        run_scheduled("thanks", zone, fire_times=[FIRE])
    seconds = time.perf_counter() - t
    jobs.bind(None)
    store.close()
    return seconds, len(memory.outbox())


def _sync(tmp: Path) -> tuple[float, float, float, int]:
    templates = make_templates(tmp / "many", {f"c{i:02d}": follow_up(f"c{i:02d}") for i in range(CAMPAIGNS)})
    db = f"sqlite:///{tmp / 'sync.db'}"
    store = Store.open(db)
    write_people(store, {f"z{i}": z for i, z in enumerate(ZONES)})
    settings = settings_for(tmp, db, templates)
    specs, _ = plan_jobs(store, settings, load_definitions(templates)[0])
    raw_store = Store.open(f"sqlite:///{tmp / 'raw.db'}")
    with open_scheduler(raw_store, settings) as sched:
        t = time.perf_counter()
        for s in specs:
            sched.add_job(s.func, s.trigger, args=s.args, id=s.id, name=s.name)
        raw = time.perf_counter() - t
    raw_store.close()
    with open_scheduler(store, settings) as sched:
        t = time.perf_counter()
        report = sync_jobs(sched, store, settings)
        first = time.perf_counter() - t
        t = time.perf_counter()
        sync_jobs(sched, store, settings)
        again = time.perf_counter() - t
    store.close()
    return raw, first, again, len(report.added)


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        plain, sent_plain = _send(tmp / "plain", zoned=False)
        zoned, sent_zoned = _send(tmp / "zoned", zoned=True)
        print(f"follow-ups, {N} customers over {len(ZONES)} zones (machine shared with other work):")
        print(
            f"  one plain run (baseline):   {plain:6.2f} s  {sent_plain} sent  {sent_plain / plain:7.0f} msg/s"
        )
        print(
            f"  {len(ZONES)} recipient-local runs:   {zoned:6.2f} s  {sent_zoned} sent  {sent_zoned / zoned:7.0f} msg/s"
        )
        print(f"  ratio zoned/plain: {zoned / plain:.2f}x")
        raw, first, again, added = _sync(tmp)
        print(f"sync of {CAMPAIGNS} campaigns x {len(ZONES)} zones = {added} jobs into an empty job store:")
        print(f"  raw add_job (baseline): {raw:6.2f} s")
        print(f"  retain sync (first):    {first:6.2f} s  ratio {first / raw:.2f}x")
        print(f"  retain sync (no change):{again:6.2f} s  ratio {again / raw:.2f}x")


if __name__ == "__main__":
    main()
