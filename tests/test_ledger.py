"""The send ledger on SQLite and PostgreSQL: claims are unique, transitions atomic, leases exclusive."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from campaigns.models import Run
from campaigns.status import DeliveryStatus, RunStatus
from campaigns.store.ledger import DeliveryOutcome, LedgerRow, RunBusyError
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn


@pytest.fixture
def people(store: object) -> list[int]:
    batch = ImportBatch(source="test")
    for i in range(1, 4):
        batch.customers[f"c{i}"] = CustomerIn(f"c{i}", email=f"c{i}@example.com", marketing_consent=True)
        batch.orders[f"o{i}"] = OrderIn(f"o{i}", f"c{i}", datetime(2024, 1, i), "GBP", [("S1", 1, 5.0)])
    batch.products["S1"] = ProductIn("S1", "Soap", 5.0, "GBP")
    store.write_import(batch)  # type: ignore[attr-defined]
    return [store.get_customer(f"c{i}").id for i in range(1, 4)]  # type: ignore[attr-defined]


def test_start_run_is_get_or_create_and_leased(store: object) -> None:
    a = store.start_run("weekly", "k1", owner="A")  # type: ignore[attr-defined]
    again = store.start_run("weekly", "k1", owner="A")  # type: ignore[attr-defined]
    assert a.id == again.id
    with pytest.raises(RunBusyError, match="being sent by A"):
        store.start_run("weekly", "k1", owner="B")  # type: ignore[attr-defined]
    # a stale lease (the owner died) is taken over
    with store.transaction() as conn:  # type: ignore[attr-defined]
        conn.execute(update(Run.__table__).values(heartbeat_at=datetime(2000, 1, 1)))
    assert store.start_run("weekly", "k1", owner="B").id == a.id  # type: ignore[attr-defined]
    store.finish_run(a.id, "B", RunStatus.COMPLETED)  # type: ignore[attr-defined]
    assert store.get_run("k1", "weekly").status == "completed"  # type: ignore[attr-defined]


def test_claim_is_once_per_run_and_customer(store: object, people: list[int]) -> None:
    run = store.start_run("weekly", "k", owner="A")  # type: ignore[attr-defined]
    rows = [LedgerRow(cid, DeliveryStatus.CLAIMED, email="x@example.com") for cid in people]
    first = store.record_deliveries(run.id, "weekly", rows)  # type: ignore[attr-defined]
    second = store.record_deliveries(run.id, "weekly", rows)  # type: ignore[attr-defined]
    assert sorted(first) == sorted(people)
    assert second == {}
    owned = store.begin_sending(list(first.values()))  # type: ignore[attr-defined]
    assert sorted(owned) == sorted(first.values())
    assert store.begin_sending(list(first.values())) == []  # type: ignore[attr-defined]  # nobody gets them twice
    store.record_result(DeliveryOutcome(owned[0], DeliveryStatus.SENT, message_id="<m1@x>"), sender="memory")  # type: ignore[attr-defined]
    store.record_result(
        DeliveryOutcome(owned[1], DeliveryStatus.FAILED, "smtp_550: no such user"), sender="memory"
    )  # type: ignore[attr-defined]
    # the third was in flight when "the process died"
    assert store.resolve_in_flight([owned[2]]) == 1  # type: ignore[attr-defined]
    counts = store.run_counts(run.id)  # type: ignore[attr-defined]
    assert counts.by_status == {"sent": 1, "failed": 1, "unknown": 1}
    assert counts.failed == {"smtp_550: no such user": 1}
    assert counts.unknown == {"in_flight_at_crash": 1}
    # recording again cannot flip a final row
    store.record_result(DeliveryOutcome(owned[0], DeliveryStatus.FAILED, "late"), sender="memory")  # type: ignore[attr-defined]
    assert store.run_counts(run.id).by_status["sent"] == 1  # type: ignore[attr-defined]


def test_release_unsent_returns_rows_to_claimed(store: object, people: list[int]) -> None:
    run = store.start_run("weekly", "k", owner="A")  # type: ignore[attr-defined]
    ids = store.record_deliveries(run.id, "weekly", [LedgerRow(c, DeliveryStatus.CLAIMED) for c in people])  # type: ignore[attr-defined]
    owned = store.begin_sending(list(ids.values()))  # type: ignore[attr-defined]
    assert store.release_unsent(owned) == 3  # type: ignore[attr-defined]
    assert sorted(store.begin_sending(owned)) == sorted(owned)  # type: ignore[attr-defined]
    assert store.run_counts(run.id).by_status == {"sending": 3}  # type: ignore[attr-defined]


def test_one_follow_up_per_order_per_campaign(store: object, people: list[int]) -> None:
    order = store.orders_for_customers([people[0]])[people[0]][0]  # type: ignore[attr-defined]
    r1 = store.start_run("thanks", "day1", owner="A")  # type: ignore[attr-defined]
    r2 = store.start_run("thanks", "day2", owner="A")  # type: ignore[attr-defined]
    row = LedgerRow(people[0], DeliveryStatus.CLAIMED, order_id=order.id)
    assert store.record_deliveries(r1.id, "thanks", [row]) != {}  # type: ignore[attr-defined]
    assert store.record_deliveries(r2.id, "thanks", [row]) == {}  # type: ignore[attr-defined]
    assert store.followed_up_orders("thanks", [order.id]) == {order.id}  # type: ignore[attr-defined]
    # another campaign may follow the same order up
    r3 = store.start_run("review-ask", "day1", owner="A")  # type: ignore[attr-defined]
    assert store.record_deliveries(r3.id, "review-ask", [row]) != {}  # type: ignore[attr-defined]


def test_deferred_rows_become_due(store: object, people: list[int]) -> None:
    run = store.start_run("weekly", "k", owner="A")  # type: ignore[attr-defined]
    at = datetime(2024, 1, 1, 8)
    store.record_deliveries(run.id, "weekly", [LedgerRow(people[0], DeliveryStatus.DEFERRED, not_before=at)])  # type: ignore[attr-defined]
    assert store.pending_deferred(run.id) == (1, at)  # type: ignore[attr-defined]
    assert store.due_deferred_customers(run.id, at - timedelta(minutes=1)) == []  # type: ignore[attr-defined]
    assert store.due_deferred_customers(run.id, at) == [people[0]]  # type: ignore[attr-defined]


def test_claiming_straight_into_sending_is_once_per_run_and_customer(
    store: object, people: list[int]
) -> None:
    """The runner claims a send window as ``sending`` in one INSERT: only the rows it created are its own."""
    run = store.start_run("weekly", "k", owner="A")  # type: ignore[attr-defined]
    rows = [LedgerRow(cid, DeliveryStatus.SENDING, email="x@example.com") for cid in people]
    first = store.record_deliveries(run.id, "weekly", rows[:2])  # type: ignore[attr-defined]
    second = store.record_deliveries(run.id, "weekly", rows)  # type: ignore[attr-defined]
    assert sorted(first) == sorted(people[:2]) and list(second) == [people[2]]
    assert store.begin_sending(list(first.values())) == []  # type: ignore[attr-defined]  # already sending
    states = store.delivery_states(run.id, people)  # type: ignore[attr-defined]
    assert {s.status for s in states.values()} == {"sending"} and {s.attempts for s in states.values()} == {1}
    assert store.resolve_in_flight([second[people[2]]]) == 1  # type: ignore[attr-defined]


def test_a_group_of_results_is_recorded_per_message(store: object, people: list[int]) -> None:
    """record_results writes each message's own outcome (one statement per group on PostgreSQL)."""
    run = store.start_run("weekly", "k", owner="A")  # type: ignore[attr-defined]
    rows = [LedgerRow(cid, DeliveryStatus.SENDING, email="x@example.com") for cid in people]
    ids = store.record_deliveries(run.id, "weekly", rows)  # type: ignore[attr-defined]
    a, b, c = (ids[p] for p in people)
    store.record_results(  # type: ignore[attr-defined]
        [
            DeliveryOutcome(a, DeliveryStatus.SENT, message_id="<a@x>", attempts=1),
            DeliveryOutcome(b, DeliveryStatus.FAILED, "smtp_550: no such user", attempts=1),
            DeliveryOutcome(c, DeliveryStatus.CLAIMED, "smtp_451: later", attempts=3),
            DeliveryOutcome(a, DeliveryStatus.FAILED, "a duplicate result loses", attempts=9),
        ],
        sender="memory",
    )
    counts = store.run_counts(run.id)  # type: ignore[attr-defined]
    assert counts.by_status == {"sent": 1, "failed": 1, "claimed": 1}
    assert counts.failed == {"smtp_550: no such user": 1}
    states = store.delivery_states(run.id, people)  # type: ignore[attr-defined]
    assert [states[p].attempts for p in people] == [1, 1, 3]
    # only rows still sending change: a final row is never flipped, a claimed one is not touched
    store.record_results(
        [DeliveryOutcome(a, DeliveryStatus.FAILED, "late"), DeliveryOutcome(c, DeliveryStatus.SENT)],
        sender="memory",
    )  # type: ignore[attr-defined]
    assert store.run_counts(run.id).by_status == {"sent": 1, "failed": 1, "claimed": 1}  # type: ignore[attr-defined]
