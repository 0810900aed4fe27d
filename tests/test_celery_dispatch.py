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
from campaigns.store.base import utcnow
from campaigns.training import train_model

from .synthetic import AS_OF, make_shop, shop_settings

CAMPAIGN = "weekly-picks"


@pytest.fixture
def shop(store: Any, tmp_path: Path) -> dict[str, Any]:
    settings = shop_settings(tmp_path, sender="memory://", batch_size=20)
    make_shop(store, customers=60)
    train_model(store, settings)
    memory.clear()
    run = store.start_run(CAMPAIGN, "k", owner=None, dispatcher="celery")
    ids = sorted(store.customers_by_ids(range(1, 61)))
    store.add_batches(run.id, [(n, [(c, None) for c in ids[n * 20 : (n + 1) * 20]]) for n in range(3)])
    rt = WorkerRuntime(settings)
    rt._store = store  # share the test's store (one engine) instead of opening a second one
    return {"store": store, "settings": settings, "run": run, "rt": rt}


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
        {"customer_id": c1, "status": "claimed", "email": "x@example.com"},
        {"customer_id": c2, "status": "claimed", "email": "y@example.com"},
    ])  # fmt: skip
    store.begin_sending([claimed[c1]])
    outcome = _batch(shop, 0)
    assert outcome.status == "done" and outcome.in_flight_resolved == 1
    counts = store.run_counts(run.id)
    assert counts.failed == {"in_flight_at_crash": 1}
    recipients = {m.rcpt_to for m in memory.outbox()}
    assert all(c.email not in recipients for c in store.customers_by_ids([c1]).values())
    assert any(c.email in recipients for c in store.customers_by_ids([c2]).values()) or counts.get("holdout")


def test_stale_and_foreign_messages_are_ignored(shop: dict[str, Any]) -> None:
    assert _batch(shop, 99).status == "missing"
    other = run_batch(
        shop["rt"], run_id=shop["run"].id + 1000, batch_no=0, campaign=CAMPAIGN, run_key="k", now=AS_OF
    )
    assert other.status == "missing"
    shop["store"].finish_run(shop["run"].id, None, "paused", "test")
    assert _batch(shop, 0).status == "stopped"
    assert memory.outbox() == []


def test_worker_command_refuses_a_thread_pool(tmp_path: Path) -> None:
    from campaigns.cli import main

    assert main(["worker", "--pool", "threads"]) == 1
