"""Run batches for the Celery dispatcher: who is sending which part of a run, and when a run is done.

The enqueuer splits a run's audience into numbered batches (``add_batches``) and sends one broker
message per batch naming only ``(run_id, batch_no)``: the members live here, so a message lost with
the broker can be re-sent from the database, and a redelivered message is harmless.

A worker takes a batch with a conditional UPDATE (:meth:`BatchStore.take_batch`, a compare-and-swap on
the lease owner) — the equivalent of ``SELECT ... FOR UPDATE SKIP LOCKED`` for work that lasts
seconds: no row lock is held across SMTP round trips, and a second delivery of the same message finds
the batch leased and backs off. ``queued -> running -> done``; a run closes when no batch is open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, func, or_, select

from campaigns.models import Run, RunBatch
from campaigns.store.base import StoreBase, chunked, utcnow

BATCHES: Table = RunBatch.__table__  # type: ignore[assignment]
RUNS: Table = Run.__table__  # type: ignore[assignment]

#: a member of a batch: (customer id, order id for post-purchase follow-ups or None)
MemberRef = tuple[int, int | None]


@dataclass(frozen=True, slots=True)
class BatchRecord:
    id: int
    run_id: int
    batch_no: int
    members: list[MemberRef]
    status: str  # queued | running | done
    owner: str | None
    heartbeat_at: datetime | None
    attempts: int


@dataclass(frozen=True, slots=True)
class BatchState:
    batch_no: int
    status: str
    owner: str | None
    heartbeat_at: datetime | None
    attempts: int


@dataclass(frozen=True, slots=True)
class BatchProgress:
    total: int
    done: int
    running: int
    done_members: int
    last_activity: datetime | None  # the newest heartbeat or finish of any batch

    @property
    def open(self) -> int:
        return self.total - self.done


def _record(r: Any) -> BatchRecord:
    return BatchRecord(
        id=r.id,
        run_id=r.run_id,
        batch_no=r.batch_no,
        members=[(int(c), None if o is None else int(o)) for c, o in r.members],
        status=r.status,
        owner=r.owner,
        heartbeat_at=r.heartbeat_at,
        attempts=r.attempts,
    )


class BatchStore(StoreBase):
    def add_batches(self, run_id: int, batches: Sequence[tuple[int, Sequence[MemberRef]]]) -> int:
        """Register ``(batch_no, members)`` for a run as ``queued``; existing numbers are left alone.

        Returns how many were new (multi-row INSERT ... ON CONFLICT DO NOTHING).
        """
        return len(self.register_batches(run_id, batches))

    def register_batches(self, run_id: int, batches: Sequence[tuple[int, Sequence[MemberRef]]]) -> list[int]:
        """:meth:`add_batches`, returning the numbers of the batches this call created."""
        if not batches:
            return []
        now = utcnow()
        rows = [
            {
                "run_id": run_id,
                "batch_no": no,
                "members": [[c, o] for c, o in members],
                "size": len(members),
                "status": "queued",
                "attempts": 0,
                "enqueued_at": now,
            }
            for no, members in batches
        ]
        new: list[int] = []
        with self.transaction() as conn:
            for part in chunked(rows, 100):
                stmt = self.insert(BATCHES).on_conflict_do_nothing().returning(BATCHES.c.batch_no)
                new.extend(int(x) for x in conn.execute(stmt, list(part)).scalars())
        return sorted(new)

    def get_batch(self, run_id: int, batch_no: int) -> BatchRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                select(BATCHES).where(BATCHES.c.run_id == run_id, BATCHES.c.batch_no == batch_no)
            ).first()
        return _record(row) if row is not None else None

    def take_batch(
        self, batch_id: int, owner: str, *, expected_owner: str | None, stale_before: datetime
    ) -> bool:
        """Lease a batch for ``owner`` if it is not done and is free, held by ``expected_owner`` (a dead
        or earlier holder the caller has judged safe to replace), or its lease is older than
        ``stale_before``. Atomic: of two callers, at most one wins. Returns whether ``owner`` holds it."""
        now = utcnow()
        free = or_(BATCHES.c.owner.is_(None), BATCHES.c.heartbeat_at < stale_before)
        if expected_owner is not None:
            free = or_(free, BATCHES.c.owner == expected_owner)
        with self.transaction() as conn:
            got = conn.execute(
                BATCHES.update()
                .where(BATCHES.c.id == batch_id, BATCHES.c.status != "done", free)
                .values(status="running", owner=owner, heartbeat_at=now, attempts=BATCHES.c.attempts + 1)
            ).rowcount
        return bool(got)

    def batch_heartbeat(self, batch_id: int, owner: str) -> bool:
        """Renew the lease; False when someone else took the batch over (this holder should stop)."""
        with self.transaction() as conn:
            got = conn.execute(
                BATCHES.update()
                .where(BATCHES.c.id == batch_id, BATCHES.c.owner == owner)
                .values(heartbeat_at=utcnow())
            ).rowcount
        return bool(got)

    def finish_batch(self, batch_id: int, owner: str) -> bool:
        """Mark the batch done (only by its lease holder); returns whether this call did it."""
        now = utcnow()
        with self.transaction() as conn:
            got = conn.execute(
                BATCHES.update()
                .where(BATCHES.c.id == batch_id, BATCHES.c.owner == owner, BATCHES.c.status == "running")
                .values(status="done", owner=None, heartbeat_at=now, finished_at=now)
            ).rowcount
        return bool(got)

    def release_batch(self, batch_id: int, owner: str) -> None:
        """Give a batch back (``queued``, no owner): a later delivery or a resume picks it up."""
        with self.transaction() as conn:
            conn.execute(
                BATCHES.update()
                .where(BATCHES.c.id == batch_id, BATCHES.c.owner == owner, BATCHES.c.status == "running")
                .values(status="queued", owner=None)
            )

    def batch_progress(self, run_id: int) -> BatchProgress:
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    BATCHES.c.status, func.count(), func.max(BATCHES.c.heartbeat_at), func.sum(BATCHES.c.size)
                )
                .where(BATCHES.c.run_id == run_id)
                .group_by(BATCHES.c.status)
            ).all()
        by = {s: int(n) for s, n, _, _ in rows}
        beats = [b for _, _, b, _ in rows if b is not None]
        return BatchProgress(
            total=sum(by.values()),
            done=by.get("done", 0),
            running=by.get("running", 0),
            done_members=sum(int(m or 0) for s, _, _, m in rows if s == "done"),
            last_activity=max(beats) if beats else None,
        )

    def open_batches(self, run_id: int, *, held_only: bool = False) -> list[BatchState]:
        """Batches of the run not done yet (queued, or running under some lease), by number; no members.

        ``held_only``: only the ``running`` ones (under a lease) — a handful, whatever the run's size:
        what the supervisor checks on every poll.
        """
        c = BATCHES.c
        cond = c.status == "running" if held_only else c.status != "done"
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(c.batch_no, c.status, c.owner, c.heartbeat_at, c.attempts)
                .where(c.run_id == run_id, cond)
                .order_by(c.batch_no)
            ).all()
        return [BatchState(int(r[0]), r[1], r[2], r[3], int(r[4])) for r in rows]

    def next_batch_no(self, run_id: int) -> int:
        with self.engine.connect() as conn:
            top = conn.execute(
                select(func.max(BATCHES.c.batch_no)).where(BATCHES.c.run_id == run_id)
            ).scalar()
        return 0 if top is None else int(top) + 1

    def reopen_run(self, run_id: int) -> None:
        """A paused or failed Celery run goes back to ``running`` for a resume (no lease: workers own batches)."""
        with self.transaction() as conn:
            conn.execute(
                RUNS.update()
                .where(RUNS.c.id == run_id, RUNS.c.status.notin_(("completed", "skipped")))
                .values(status="running", reason=None, owner=None, finished_at=None, updated_at=utcnow())
            )

    def claim_run_close(self, run_id: int) -> bool:
        """Exactly one caller wins the right to close a running run (the last-batch check's tie-break)."""
        with self.transaction() as conn:
            got = conn.execute(
                RUNS.update()
                .where(and_(RUNS.c.id == run_id, RUNS.c.status == "running", RUNS.c.owner.is_(None)))
                .values(owner="closing", heartbeat_at=utcnow(), updated_at=utcnow())
            ).rowcount
        return bool(got)
