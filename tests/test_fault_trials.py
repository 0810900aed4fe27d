"""SIGKILL trials: a real `retain send` process against a real SMTP sink on loopback, killed at random
points again and again; after the last resume every eligible recipient has exactly one message.

The documented window (docs/sending.md): rows left ``sending`` by a killed process are resolved at most
once — marked ``unknown`` / ``in_flight_at_crash``, never re-sent. So at the sink: nobody twice, every
``sent`` row exactly once, and the only ones missing are counted ``in_flight_at_crash`` rows.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from campaigns.models import Delivery
from campaigns.store import Store
from campaigns.training import train_model

from .smtp_sink import FaultPlan, SinkProcess
from .synthetic import ROOT, cli_env, make_shop, shop_settings

RECIPIENTS = 10_000
KILLS = 10


def _env(settings: Any, tmp: Path) -> dict[str, str]:
    # the synthetic shop's @example.com customers and loopback links would trip the go-live guard:
    # this is the test server the override is for
    return cli_env(settings, tmp, RETAIN_ALLOW_UNSAFE_SEND="1")


def _send(env: dict[str, str], dsn: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from campaigns.cli import run; run()", "send", "weekly-picks", "--run-key", "trial",
         "--sender", dsn, "--json"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _delivered(sink: SinkProcess) -> int:
    return sum(sink.counts().values())


def _wait_for_kill_point(
    proc: subprocess.Popen[str], sink: SinkProcess, trial: int, rng: random.Random, deadline: float
) -> None:
    """Return when ``proc`` should be killed: every fourth trial during start-up (model load, segment
    query), the others once the sink has taken 50-500 more messages, so the kill lands mid-send at varied
    depths however fast the machine is (a wall-clock sleep let a fast run finish before ten kills)."""
    if trial % 4 == 0:
        time.sleep(rng.uniform(0.3, 1.5))
        return
    target = _delivered(sink) + rng.randint(50, 500)
    while proc.poll() is None and _delivered(sink) < target and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_sends_each_recipient_once(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'trial.db'}"
    settings = shop_settings(tmp_path)
    store = Store.open(db_url)
    make_shop(store, customers=RECIPIENTS, products=300, seed=11)
    train_model(store, settings)
    env = _env(settings.with_overrides(database_url=db_url), tmp_path)
    rng = random.Random(2024)
    kills = 0
    with SinkProcess(tmp_path / "sink.log", FaultPlan(delay_ms=2)) as sink:
        deadline = time.monotonic() + 400  # bounded whatever happens
        while kills < KILLS and time.monotonic() < deadline:
            proc = _send(env, sink.dsn)
            _wait_for_kill_point(proc, sink, kills, rng, deadline)
            if proc.poll() is not None:
                proc.communicate()
                break  # the run finished before this kill
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            kills += 1
        final = _send(env, sink.dsn)
        out, err = final.communicate(timeout=600)
        assert final.returncode == 0, err
        counts = sink.counts()
    summary = json.loads(out)
    with store.engine.connect() as conn:
        rows = conn.execute(select(Delivery.email, Delivery.status, Delivery.reason)).all()
    by_status: dict[str, set[str]] = {}
    for email, status, reason in rows:
        key = f"{status}:{reason}" if status in ("failed", "unknown") else status
        by_status.setdefault(key, set()).add(email)
    sent = by_status.get("sent", set())
    in_flight = by_status.get("unknown:in_flight_at_crash", set())
    assert kills >= 5, "the run finished too fast to be killed enough times"
    assert summary["status"] == "completed"
    assert set(by_status) <= {"sent", "holdout", "unknown:in_flight_at_crash"}, by_status.keys()
    assert len(rows) == RECIPIENTS  # everyone has exactly one ledger row: no one lost
    assert max(counts.values()) == 1  # zero duplicates at the sink
    assert sent <= set(counts)  # every recorded send arrived
    assert set(counts) <= sent | in_flight  # nothing arrived that the ledger does not know of
    # the at-most-once window: bounded by what can be in flight when the process dies
    assert len(in_flight) <= kills * (2 * settings.send_concurrency + 64)
    print(
        f"\n{kills} kills: {len(sent)} sent, {len(in_flight)} in flight at a crash "
        f"({len(set(counts) & in_flight)} of them had arrived), {len(by_status.get('holdout', ()))} holdout"
    )
