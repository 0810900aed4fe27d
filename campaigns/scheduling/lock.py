"""One scheduler per database: acquire, renew and release the scheduler lock.

SQLite uses the ``scheduler_locks`` row with a heartbeat (a holder of this host whose process is gone
is taken over at once; one of another host once silent for ``STALE_AFTER``); PostgreSQL an advisory lock the server frees when the holder's
connection dies (campaigns/store/scheduling.py). A refused start raises SchedulerError naming the
holder and what to do.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from campaigns.errors import SchedulerError
from campaigns.leases import mark_live
from campaigns.store.scheduling import AdvisoryLock

LOCK_NAME = "scheduler"
HEARTBEAT_SECONDS = 10
STALE_AFTER = timedelta(seconds=60)


class SchedulerLock:
    """The lock for ``owner`` on ``store``'s database; use :meth:`acquire` / :meth:`heartbeat` / :meth:`release`."""

    def __init__(
        self, store: Any, owner: str, *, name: str = LOCK_NAME, stale_after: timedelta = STALE_AFTER
    ) -> None:
        self.store = store
        self.owner = owner
        self.name = name
        self.stale_after = stale_after
        self._advisory: AdvisoryLock | None = None
        self.held = False

    def acquire(self, now: datetime | None = None) -> None:
        """Take the lock or raise SchedulerError (another live scheduler holds it). ``now``: naive UTC."""
        if self.store.dialect == "postgresql":
            lock = self.store.try_advisory_lock(self.name)
            if lock is None:
                holder = self.store.lock_holder(self.name)
                who = (
                    f" ({holder.owner}, running since {holder.acquired_at:%Y-%m-%d %H:%M:%S} UTC)"
                    if holder
                    else ""
                )
                raise SchedulerError(
                    f"another scheduler is already running on {self.store.url}{who}; only one may run per "
                    "database (APScheduler cannot share its job store). Stop it first; if it died, its "
                    "PostgreSQL session lock is released as soon as its connection closes."
                )
            self._advisory = lock
            self.store.force_lock_row(self.name, self.owner, now)
        else:
            holder = self.store.acquire_lock_row(self.name, self.owner, stale_after=self.stale_after, now=now)
            if holder is not None:
                raise SchedulerError(
                    f"another scheduler is already running on {self.store.url} ({holder.owner}, last heartbeat "
                    f"{holder.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC); only one may run per database. Stop it first; "
                    f"if it died, this one takes over {int(self.stale_after.total_seconds())} s after its last heartbeat "
                    "(at once when it ran on this host)."
                )
        self.held = True
        mark_live(self.owner)  # another thread of this process must not take it over

    def heartbeat(self, now: datetime | None = None) -> bool:
        """Renew the lock; False when it was lost (the caller must stop scheduling)."""
        if not self.held:
            return False
        if self._advisory is not None:
            ok = self._advisory.alive()
            if ok:
                self.store.force_lock_row(self.name, self.owner, now)
            return ok
        return bool(self.store.heartbeat_lock_row(self.name, self.owner, now))

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        mark_live(self.owner, False)
        try:
            self.store.release_lock_row(self.name, self.owner)
        finally:
            if self._advisory is not None:
                self._advisory.release()
                self._advisory = None

    def __enter__(self) -> SchedulerLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
