"""The status vocabularies of runs and ledger rows, as ``StrEnum`` s.

Members compare equal to their string values, which is what the database stores, so rows read back
as plain strings and enum members can be compared directly::

    DeliveryStatus.SENT == "sent"        # True
    RunStatus("paused") is RunStatus.PAUSED

A delivery row (one customer of one run) moves::

    claimed -> sending -> sent | failed | unknown   (claimed: rendered, not yet handed over)
    sending -> claimed                       (a failure before the message data was sent: retried)
    skipped | holdout                        (final on insert: nothing is sent, the reason says why)
    deferred -> claimed ...                  (quiet hours: picked up again after ``not_before``)
    sending -> unknown                       (the process handling it died: never re-sent, counted)
    unknown -> claimed                       (only in a run the operator started ``--at-least-once``)

``unknown``: the message data went to the transport but its final reply never came (or the process died
while it was in flight); it may have been delivered, so it is never sent again by default (at most once,
docs/sending.md has the whole state machine).

A run moves ``running -> completed | deferred | paused | failed``; ``skipped`` records a scheduled fire that
was not sent (too late, template invalid); ``dry_run`` only ever appears in a summary, never in the database.
"""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    CLAIMED = "claimed"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    HOLDOUT = "holdout"
    DEFERRED = "deferred"
    UNKNOWN = "unknown"


#: rows that will never change again (``unknown`` only changes in an ``--at-least-once`` run)
FINAL_DELIVERY = frozenset(
    {
        DeliveryStatus.SENT,
        DeliveryStatus.FAILED,
        DeliveryStatus.SKIPPED,
        DeliveryStatus.HOLDOUT,
        DeliveryStatus.UNKNOWN,
    }
)
#: rows that hold a customer's frequency-cap slot: handed (or about to be handed) to a transport
CAP_HOLDING = frozenset(
    {DeliveryStatus.CLAIMED, DeliveryStatus.SENDING, DeliveryStatus.SENT, DeliveryStatus.UNKNOWN}
)
#: rows a (re)processed batch still has to work on
OPEN_DELIVERY = frozenset({DeliveryStatus.CLAIMED, DeliveryStatus.DEFERRED})


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    DEFERRED = "deferred"
    PAUSED = "paused"
    FAILED = "failed"
    SKIPPED = "skipped"
    DRY_RUN = "dry_run"


#: a run in one of these states is done: a rerun of its key sends nothing
CLOSED_RUN = frozenset({RunStatus.COMPLETED, RunStatus.SKIPPED})

__all__ = ["CAP_HOLDING", "CLOSED_RUN", "FINAL_DELIVERY", "OPEN_DELIVERY", "DeliveryStatus", "RunStatus"]
