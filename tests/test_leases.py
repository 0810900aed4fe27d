"""Leases that respect a live owner (campaigns/leases.py): the takeover rule, a heartbeat on its own
thread that a blocked call cannot stop, and an owner that lost its lease recording nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from campaigns import leases, runner
from campaigns.definition import find_campaign
from campaigns.errors import LeaseLostError, RunBusyError
from campaigns.leases import LeaseKeeper, may_take_over
from campaigns.models import Delivery, Run
from campaigns.senders.base import OutgoingMessage, SendResult, SendStatus
from campaigns.store import ledger
from campaigns.training import load_recommender, train_model

from .synthetic import make_shop, shop_settings

HERE = socket.gethostname()
NOW = datetime(2024, 6, 3, 12, 0)
LEASE = timedelta(seconds=120)


def _wait(cond: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def test_takeover_rule_same_host_by_pid_other_host_by_heartbeat() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = f"{HERE}:{child.pid}:abc"
        ancient = NOW - timedelta(days=30)
        # a live process of this host is never taken over, however old its heartbeat
        assert not may_take_over(live, ancient, NOW, LEASE)
        assert not may_take_over("sync:" + live, ancient, NOW, LEASE)  # a role prefix parses too
    finally:
        child.kill()
        child.wait()
    # ... and is taken over at once when it is gone, however fresh its heartbeat
    assert may_take_over(live, NOW, NOW, LEASE)
    assert may_take_over("sync:" + live, NOW, NOW, LEASE)
    # another host: only once its heartbeat is older than the lease
    assert not may_take_over("elsewhere:42:x", NOW - timedelta(seconds=119), NOW, LEASE)
    assert may_take_over("elsewhere:42:x", NOW - timedelta(seconds=121), NOW, LEASE)
    assert may_take_over(None, None, NOW, LEASE)


def test_an_attempt_of_this_process_is_alive_while_its_keeper_runs() -> None:
    mine = f"{HERE}:{os.getpid()}:attempt1"
    keeper = LeaseKeeper(lambda: True, 30, owner=mine).start()
    try:
        assert not may_take_over(mine, NOW - timedelta(days=1), NOW, LEASE, me=f"{HERE}:{os.getpid()}:other")
    finally:
        keeper.stop()
    assert may_take_over(mine, NOW, NOW, LEASE, me=f"{HERE}:{os.getpid()}:other")


def test_keeper_heartbeat_survives_a_blocked_caller_and_reports_a_lost_lease(
    store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger, "LEASE_SECONDS", 1.0)
    owner = "otherhost:4242:a"  # another host: only its heartbeat protects it
    run = store.start_run("weekly", "k", owner=owner)
    with LeaseKeeper(lambda: store.heartbeat(run.id, owner), 0.2, owner=owner) as keeper:
        # the caller is stuck in a network call for three leases; the keeper's thread beats on
        blocked = threading.Event()
        blocked.wait(3.0)
        with pytest.raises(RunBusyError, match="being sent by otherhost:4242:a"):
            store.start_run("weekly", "k", owner="otherhost:7:b")
        assert keeper.beats >= 5
    # the keeper stopped: once the heartbeat is older than the lease, the run is taken over
    _wait(lambda: _try_start(store, "otherhost:7:b"))
    lost = LeaseKeeper(lambda: store.heartbeat(run.id, owner), 0.1, owner=owner).start()
    try:
        _wait(lost.lost.is_set)
        with pytest.raises(LeaseLostError):
            lost.check()
    finally:
        lost.stop()


def _try_start(store: Any, owner: str) -> bool:
    try:
        store.start_run("weekly", "k", owner=owner)
    except RunBusyError:
        return False
    return True


class _TakenOverSender:
    """A sender stuck in its first batch while another host takes the run over, then 'delivering'."""

    name = "stuck"

    def __init__(self, store: Any, processor_lease: Callable[[], LeaseKeeper | None]) -> None:
        self.store = store
        self.lease = processor_lease
        self.handed: list[str] = []

    def send_batch(
        self, messages: Sequence[OutgoingMessage], on_result: Callable[[SendResult], None]
    ) -> None:
        with self.store.transaction() as conn:
            conn.execute(update(Run.__table__).values(owner="otherhost:9:taker"))
        keeper = self.lease()
        assert keeper is not None
        _wait(keeper.lost.is_set)
        for m in messages:
            self.handed.append(m.key)
            on_result(SendResult(m.key, SendStatus.SENT, "250 ok"))

    def close(self) -> None:
        pass

    def __enter__(self) -> _TakenOverSender:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_an_owner_that_lost_its_lease_records_nothing(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = shop_settings(tmp_path)
    make_shop(store, customers=30)
    train_model(store, settings, model="itemknn")
    monkeypatch.setattr(runner, "LEASE_HEARTBEAT_SECONDS", 0.1)
    keepers: list[LeaseKeeper] = []
    real_start = LeaseKeeper.start

    def remember(self: LeaseKeeper) -> LeaseKeeper:
        keepers.append(self)
        return real_start(self)

    monkeypatch.setattr(leases.LeaseKeeper, "start", remember)
    sender = _TakenOverSender(store, lambda: keepers[-1] if keepers else None)
    definition = find_campaign(Path(settings.templates_dir), "weekly-picks")
    with pytest.raises(LeaseLostError):
        runner.run_campaign(
            store, settings, definition, run_key="lease", sender=sender,
            recommender=load_recommender(settings, store),
        )  # fmt: skip
    assert sender.handed, "the sender was reached"
    with store.engine.connect() as conn:
        statuses = [s for (s,) in conn.execute(select(Delivery.status))]
        run = conn.execute(select(Run.owner, Run.status)).one()
    # the loser recorded no result and did not touch the run the taker now holds
    assert set(statuses) == {"holdout", "sending"}  # no result recorded: neither sent nor failed
    assert statuses.count("sending") >= len(sender.handed)
    assert run.owner == "otherhost:9:taker" and run.status == "running"
