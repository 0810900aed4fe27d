"""The Celery batch protocol without a broker: leases, redelivery, takeover, the last-batch close.

``run_batch`` is what the Celery task runs; here it is called directly, on SQLite and PostgreSQL, with
the in-memory sender, so every guarantee the workers rely on is checked with exact counts.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from campaigns.config import Settings
from campaigns.dispatch import resolve_dispatcher
from campaigns.dispatch.batch import WorkerRuntime, holder_is_gone, process_identity, run_batch
from campaigns.dispatch.celery import CELERY_CONFIG, CeleryDispatcher
from campaigns.dispatch.local import LocalDispatcher
from campaigns.errors import ConfigError
from campaigns.senders import memory
from campaigns.status import DeliveryStatus, RunStatus
from campaigns.store.base import utcnow
from campaigns.store.ledger import LedgerRow
from campaigns.training import train_model

from .synthetic import AS_OF, make_shop, shop_settings

CAMPAIGN = "weekly-picks"


def _split_run(store: Any, tmp_path: Path, customers: int, batch_size: int) -> dict[str, Any]:
    """A trained shop of ``customers``, a Celery run split into batches of ``batch_size`` and a worker
    runtime on the test's store."""
    settings = shop_settings(tmp_path, sender="memory://", batch_size=batch_size)
    make_shop(store, customers=customers)
    train_model(store, settings)
    memory.clear()
    run = store.start_run(CAMPAIGN, "k", owner=None, dispatcher="celery")
    ids = sorted(store.customers_by_ids(range(1, customers + 1)))
    store.add_batches(
        run.id,
        [
            (n, [(c, None) for c in ids[i : i + batch_size]])
            for n, i in enumerate(range(0, len(ids), batch_size))
        ],
    )
    rt = WorkerRuntime(settings)
    rt._store = store  # share the test's store (one engine) instead of opening a second one
    return {"store": store, "settings": settings, "run": run, "rt": rt}


@pytest.fixture
def shop(store: Any, tmp_path: Path) -> dict[str, Any]:
    return _split_run(store, tmp_path, customers=60, batch_size=20)


def _batch(shop: dict[str, Any], no: int) -> Any:
    return run_batch(
        shop["rt"], run_id=shop["run"].id, batch_no=no, campaign=CAMPAIGN, run_key="k", now=AS_OF
    )


def test_resolve_dispatcher_by_name_and_settings() -> None:
    assert isinstance(resolve_dispatcher("local"), LocalDispatcher)
    assert isinstance(resolve_dispatcher(Settings(dispatcher="celery")), CeleryDispatcher)
    with pytest.raises(ConfigError, match="unknown dispatcher 'rq'"):
        resolve_dispatcher("rq")


def test_celery_settings_give_the_delivery_guarantees() -> None:
    assert CELERY_CONFIG["task_acks_late"] is True
    assert CELERY_CONFIG["task_reject_on_worker_lost"] is True
    assert CELERY_CONFIG["worker_prefetch_multiplier"] == 1


def test_batches_send_once_and_the_last_one_closes_the_run(shop: dict[str, Any]) -> None:
    store, run = shop["store"], shop["run"]
    first = _batch(shop, 0)
    assert first.status == "done" and first.closed is None
    assert _batch(shop, 0).status == "already_done"  # a redelivered message sends nothing
    assert _batch(shop, 1).closed is None
    last = _batch(shop, 2)
    assert last.closed is not None and last.closed.status == "completed"
    sent = memory.outbox()
    counts = store.run_counts(run.id)
    assert len(sent) == counts.get("sent") > 0
    assert counts.get("sent") + counts.get("holdout") == 60
    assert max(Counter(m.rcpt_to for m in sent).values()) == 1
    assert store.get_run("k", CAMPAIGN).status == "completed"
    assert store.get_run("k", CAMPAIGN).dispatcher == "celery"


def test_a_batch_leased_by_a_live_worker_is_busy(shop: dict[str, Any]) -> None:
    store, run = shop["store"], shop["run"]
    batch = store.get_batch(run.id, 0)
    other = f"{socket.gethostname()}:1:abcdef"  # pid 1 is alive: a live holder on this host
    assert store.take_batch(batch.id, other, expected_owner=None, stale_before=utcnow().replace(year=2000))
    assert _batch(shop, 0).status == "busy"
    assert memory.outbox() == []


def test_a_dead_holders_batch_is_taken_over_and_its_in_flight_rows_resolved_once(
    shop: dict[str, Any],
) -> None:
    store, run = shop["store"], shop["run"]
    batch = store.get_batch(run.id, 0)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    dead = f"{socket.gethostname()}:{proc.pid}:deadbeef"
    assert holder_is_gone(dead) and not holder_is_gone(f"{socket.gethostname()}:1:x")
    assert holder_is_gone(process_identity())
    assert not holder_is_gone(f"elsewhere:{os.getpid()}:x")  # another host: only the lease expiry says
    store.take_batch(batch.id, dead, expected_owner=None, stale_before=utcnow().replace(year=2000))
    # the dead worker had claimed two customers and handed one to the sender
    c1, c2 = batch.members[0][0], batch.members[1][0]
    claimed = store.record_deliveries(run.id, CAMPAIGN, [
        LedgerRow(c1, DeliveryStatus.CLAIMED, email="x@example.com"),
        LedgerRow(c2, DeliveryStatus.CLAIMED, email="y@example.com"),
    ])  # fmt: skip
    store.begin_sending([claimed[c1]])
    outcome = _batch(shop, 0)
    assert outcome.status == "done" and outcome.in_flight_resolved == 1
    counts = store.run_counts(run.id)
    assert counts.unknown == {"in_flight_at_crash": 1}
    recipients = {m.rcpt_to for m in memory.outbox()}
    assert all(c.email not in recipients for c in store.customers_by_ids([c1]).values())
    assert any(c.email in recipients for c in store.customers_by_ids([c2]).values()) or counts.get("holdout")


def test_stale_and_foreign_messages_are_ignored(shop: dict[str, Any]) -> None:
    assert _batch(shop, 99).status == "missing"
    other = run_batch(
        shop["rt"], run_id=shop["run"].id + 1000, batch_no=0, campaign=CAMPAIGN, run_key="k", now=AS_OF
    )
    assert other.status == "missing"
    shop["store"].finish_run(shop["run"].id, None, RunStatus.PAUSED, "test")
    assert _batch(shop, 0).status == "stopped"
    assert memory.outbox() == []


def test_worker_command_refuses_a_thread_pool(tmp_path: Path) -> None:
    from campaigns.cli import main

    assert main(["worker", "--pool", "threads"]) == 1


class _Crash(BaseException):
    """Stands for the worker process dying (SIGKILL): nothing after it runs."""


class _DyingSender(memory.MemorySender):
    """Delivers ``deliver`` messages, then the process "dies" in the middle of a send window."""

    def __init__(self, deliver: int) -> None:
        super().__init__()
        self.left = deliver

    def send_batch(self, messages: Any, on_result: Any) -> None:
        for message in messages:
            if self.left == 0:
                raise _Crash
            self.left -= 1
            self.outbox.append(message)
            on_result(memory.SendResult(message.key, memory.SendStatus.SENT, code="smtp_250"))


def test_a_crash_leaves_at_most_one_window_in_flight_and_nothing_claimed(store: Any, tmp_path: Path) -> None:
    """Rows are claimed straight into ``sending`` one send window at a time: a worker dying mid-batch
    leaves at most that window ``sending`` (resolved at most once), no ``claimed`` rows, and the rest
    of the batch unclaimed; the retry sends everyone else exactly once."""
    split = _split_run(store, tmp_path, customers=300, batch_size=300)  # one batch
    settings, run, rt = split["settings"], split["run"], split["rt"]
    window = max(settings.send_concurrency * 2, 64)
    rt._senders["dying://"] = _DyingSender(deliver=window + 10)  # dies 10 messages into the 2nd window
    with pytest.raises(_Crash):
        run_batch(rt, run_id=run.id, batch_no=0, campaign=CAMPAIGN, run_key="k", now=AS_OF, sender="dying://")
    counts = store.run_counts(run.id)
    assert counts.get("claimed") == 0
    assert 0 < counts.get("sending") <= window
    assert counts.get("sent") == window  # the first window's results were written before the second began
    # the retry (the lease is this process's, as after a restart) resolves the in-flight rows once
    died = len(memory.outbox())
    outcome = run_batch(rt, run_id=run.id, batch_no=0, campaign=CAMPAIGN, run_key="k", now=AS_OF)
    assert outcome.status == "done" and outcome.in_flight_resolved == counts.get("sending")
    after = store.run_counts(run.id)
    assert after.unknown == {"in_flight_at_crash": counts.get("sending")}
    assert after.get("sending") == after.get("claimed") == 0
    assert after.total == 300  # every member has exactly one ledger row
    sent = memory.outbox()
    assert len(sent) - died == after.get("sent") - window  # the retry sent only rows it claimed itself
    assert len(sent) == after.get("sent") + 10  # the 10 delivered in the crashed window: failed, never again
    assert max(Counter(m.rcpt_to for m in sent).values()) == 1


def test_load_members_fetches_the_batch_orders_together(shop: dict[str, Any]) -> None:
    """A post-purchase batch carries (customer, order) refs; a missing customer or order drops the member."""
    from campaigns.dispatch.batch import load_members

    store = shop["store"]
    due = store.orders_between(AS_OF.replace(year=2000), AS_OF)[:3]
    assert len(due) == 3
    refs = [(c, o) for o, c, _ in due] + [(due[0][1], 10**9), (10**9, None), (due[1][1], None)]
    members = load_members(store, refs)
    assert [(m.customer.id, m.order.id if m.order else None) for m in members] == [
        (c, o) for o, c, _ in due
    ] + [(due[1][1], None)]
    assert all(m.order.lines for m in members if m.order)
