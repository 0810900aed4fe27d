"""Fault trials of the sending side with real processes (tests/fault_trials_send.py): a slow final reply
(and a SIGKILL while replies are pending), a mid-run unsubscribe, two concurrent runs with cap 1 — each
on SQLite and PostgreSQL, asserting the goal's zeros: no duplicate at the sink, no customer silently
unmailed, no mail after a recorded unsubscribe. Repeat them with
``python -m tests.fault_trials_send --repeat 20 --db sqlite,postgresql``."""

from __future__ import annotations

import pytest

from .conftest import need_server
from .fault_trials_send import TRIALS, run_trial


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("trial", list(TRIALS))
def test_send_fault_trial(trial: str, db: str) -> None:
    if db == "postgresql":
        need_server("PostgreSQL", 5432)
    result = run_trial(trial, db, seed=7)
    print(f"\n{trial}/{db}: {result}")
    assert result.duplicates == 0, result
    assert result.unmailed == 0, result
    assert result.after_unsubscribe == 0, result
    assert result.notes["sent_not_at_sink"] == 0, result  # every recorded send arrived
    assert result.notes["at_sink_not_in_ledger"] == 0, result  # nothing arrived the ledger does not know
    assert result.eligible > 0.5 * result.customers, result  # most customers were (maybe) mailed
    if trial == "slow_final_reply":
        assert result.notes["impatient_unknown"] > 0 and "unexpected" not in result.notes, result
        assert result.notes["impatient_rerun_new_messages"] == 0, result
        assert result.notes["patient_status"] == "completed", result
    if trial == "unsubscribe_mid_run":
        assert result.notes["victims"] == 20 and result.notes["stopped"] > 0, result
    if trial == "concurrent_cap":
        assert result.notes["customers_holding_two_slots"] == 0, result
        assert result.notes["capped"] > 0, result  # both runs reached the same customers
