"""The single-scheduler lock, and the few reads the scheduler needs.

APScheduler 3 cannot share a job store between processes, so one scheduler per database:

- **SQLite**: a row in ``scheduler_locks`` (name, owner, heartbeat). Acquiring inserts the row, or
  takes it over when its heartbeat is older than ``stale_after`` (the holder died); the holder renews
  the heartbeat while it runs and deletes the row on a clean exit.
- **PostgreSQL**: a session-level advisory lock (``pg_try_advisory_lock``) held on a dedicated
  connection: the server releases it the moment the holder's connection dies, so a takeover needs
  no timeout. The key is derived from the database and schema, so schemas sharing one server (the
  test suite's) never collide. The lock row is still written, for the "who holds it" message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Connection, Table, delete, func, select, text

from campaigns.leases import may_take_over
from campaigns.models import Customer, Delivery, Order, OrderLine, Run, SchedulerLock
from campaigns.status import DeliveryStatus, RunStatus
from campaigns.store.base import StoreBase, utcnow
from campaigns.store.engine import advisory_lock_key
from campaigns.store.ledger import IN_FLIGHT_AT_CRASH

LOCKS, CUST, RUNS, DEL, ORDERS, LINES = (
    cast(Table, m.__table__) for m in (SchedulerLock, Customer, Run, Delivery, Order, OrderLine)
)
#: the reason an ``unknown`` row carries when its process died with the message in flight


@dataclass(frozen=True, slots=True)
class OpenScheduledRun:
    """A scheduled run left ``running`` or ``paused``: its key, fire time and who last held it."""

    id: int
    campaign: str
    key: str
    status: str
    scheduled_for: datetime
    owner: str | None
    heartbeat_at: datetime | None
    dispatcher: str = "local"


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds (or last held) a scheduler lock."""

    name: str
    owner: str
    acquired_at: datetime
    heartbeat_at: datetime


class AdvisoryLock:
    """A held PostgreSQL advisory lock; the dedicated connection stays open until :meth:`release`."""

    def __init__(self, conn: Connection, key: int) -> None:
        self._conn: Connection | None = conn
        self.key = key

    @property
    def held(self) -> bool:
        return self._conn is not None

    def alive(self) -> bool:
        """True while the lock's connection still answers (the lock cannot be lost otherwise)."""
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("SELECT 1"))
            self._conn.commit()
            return True
        except Exception:  # noqa: BLE001 - any driver error means the session (and the lock) is gone
            return False

    def release(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self.key})
            self._conn.commit()
        except Exception:  # noqa: BLE001 - closing the connection releases the lock anyway
            pass
        finally:
            self._conn.close()
            self._conn = None


class SchedulingStore(StoreBase):
    # ------------------------------------------------------------------ lock row (SQLite; info on PG)

    def acquire_lock_row(
        self, name: str, owner: str, *, stale_after: timedelta, now: datetime | None = None
    ) -> LockHolder | None:
        """Take the lock row for ``owner``; returns None on success, else the live holder.

        Succeeds when the row is absent, already ``owner``'s, its holder is a dead process of this
        host (a killed scheduler or ``schedule sync``: taken over at once), or its heartbeat is older
        than ``stale_after`` (another host's holder went silent). ``now`` is naive UTC (tests inject it).
        """
        now = now or utcnow()
        with self.transaction() as conn:
            row = conn.execute(select(LOCKS).where(LOCKS.c.name == name)).first()
            if (
                row is not None
                and row.owner != owner
                and may_take_over(row.owner, row.heartbeat_at, now, stale_after)
            ):
                # compare-and-set on the dead holder: of two takers, one wins
                took = conn.execute(
                    LOCKS.update()
                    .where(LOCKS.c.name == name, LOCKS.c.owner == row.owner)
                    .values(owner=owner, acquired_at=now, heartbeat_at=now)
                ).rowcount
                if took:
                    return None
            stmt = (
                self.insert(LOCKS)
                .values(name=name, owner=owner, acquired_at=now, heartbeat_at=now)
                .on_conflict_do_nothing(index_elements=[LOCKS.c.name])
                .returning(LOCKS.c.name)
            )
            # rowcount is unreliable for INSERT .. ON CONFLICT on PostgreSQL: ask for the row instead
            if conn.execute(stmt).first() is not None:
                return None
            took = conn.execute(
                LOCKS.update()
                .where(LOCKS.c.name == name, LOCKS.c.owner == owner)
                .values(owner=owner, acquired_at=now, heartbeat_at=now)
            ).rowcount
            if took:
                return None
            row = conn.execute(select(LOCKS).where(LOCKS.c.name == name)).one()
            return LockHolder(row.name, row.owner, row.acquired_at, row.heartbeat_at)

    def force_lock_row(self, name: str, owner: str, now: datetime | None = None) -> None:
        """Write the row for ``owner`` unconditionally (PostgreSQL: after winning the advisory lock)."""
        now = now or utcnow()
        with self.transaction() as conn:
            stmt = self.insert(LOCKS).on_conflict_do_update(
                index_elements=[LOCKS.c.name],
                set_={"owner": owner, "acquired_at": now, "heartbeat_at": now},
            )
            conn.execute(stmt, {"name": name, "owner": owner, "acquired_at": now, "heartbeat_at": now})

    def heartbeat_lock_row(self, name: str, owner: str, now: datetime | None = None) -> bool:
        """Renew ``owner``'s heartbeat; False when the row is no longer ``owner``'s (taken over)."""
        with self.transaction() as conn:
            return bool(
                conn.execute(
                    LOCKS.update()
                    .where(LOCKS.c.name == name, LOCKS.c.owner == owner)
                    .values(heartbeat_at=now or utcnow())
                ).rowcount
            )

    def release_lock_row(self, name: str, owner: str) -> None:
        with self.transaction() as conn:
            conn.execute(delete(LOCKS).where(LOCKS.c.name == name, LOCKS.c.owner == owner))

    def lock_holder(self, name: str) -> LockHolder | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(LOCKS).where(LOCKS.c.name == name)).first()
        return LockHolder(row.name, row.owner, row.acquired_at, row.heartbeat_at) if row else None

    # ------------------------------------------------------------------ advisory lock (PostgreSQL)

    def try_advisory_lock(self, name: str) -> AdvisoryLock | None:
        """PostgreSQL only: the advisory lock for ``name`` in this database+schema, or None if held."""
        conn = self.engine.connect()
        try:
            key = advisory_lock_key(conn, name)
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return None
        return AdvisoryLock(conn, key)

    # ------------------------------------------------------------------ reads for planning jobs

    def customer_timezones(self) -> dict[str | None, int]:
        """How many customers carry each ``timezone`` value (None = no timezone)."""
        with self.engine.connect() as conn:
            q = select(CUST.c.timezone, func.count()).group_by(CUST.c.timezone)
            return {tz: int(n) for tz, n in conn.execute(q)}

    def open_scheduled_runs(self) -> list[OpenScheduledRun]:
        """Scheduled runs (key ``sched:...``) still ``running`` or ``paused``, oldest fire first."""
        with self.engine.connect() as conn:
            q = (
                select(RUNS)
                .where(
                    RUNS.c.status.in_((RunStatus.RUNNING, RunStatus.PAUSED)),
                    RUNS.c.scheduled_for.is_not(None),
                    RUNS.c.key.like("sched:%"),
                )
                .order_by(RUNS.c.scheduled_for, RUNS.c.id)
            )
            return [
                OpenScheduledRun(
                    r.id, r.campaign, r.key, r.status, r.scheduled_for, r.owner, r.heartbeat_at, r.dispatcher
                )
                for r in conn.execute(q)
            ]

    def resolve_stale_sending(self, run_id: int, older_than: datetime) -> int:
        """Rows of ``run_id`` left ``sending`` since before ``older_than`` (naive UTC) become ``unknown``.

        Their process died (or its final reply never came) with the message handed to the server:
        whether it arrived cannot be known, so it is never re-sent, only counted (docs/scheduling.md).
        """
        with self.transaction() as conn:
            return int(
                conn.execute(
                    DEL.update()
                    .where(
                        DEL.c.run_id == run_id,
                        DEL.c.status == DeliveryStatus.SENDING,
                        DEL.c.updated_at < older_than,
                    )
                    .values(status=DeliveryStatus.UNKNOWN, reason=IN_FLIGHT_AT_CRASH, updated_at=utcnow())
                ).rowcount
            )

    def data_signature(self) -> str:
        """Counts and highest ids of customers, orders and order lines: changes with every import that
        adds or changes purchase history (re-importing the same file leaves it as it was)."""
        with self.engine.connect() as conn:
            parts = []
            for table in (CUST, ORDERS, LINES):
                n, top = conn.execute(select(func.count(), func.max(table.c.id))).one()
                parts.append(f"{int(n)}/{int(top or 0)}")
        return ":".join(parts)

    def run_exists(self, campaign: str, key: str) -> bool:
        with self.engine.connect() as conn:
            q = select(RUNS.c.id).where(RUNS.c.campaign == campaign, RUNS.c.key == key)
            return conn.execute(q).first() is not None


__all__ = [
    "IN_FLIGHT_AT_CRASH",
    "AdvisoryLock",
    "LockHolder",
    "OpenScheduledRun",
    "SchedulingStore",
]
