"""The store as each consumer sees it: one narrow Protocol per job, instead of the whole ``Store``.

``campaigns.store.Store`` implements all of them (checked by mypy below); a consumer names only the
protocol it uses, so its signature says what it reads and writes, and a test double needs only those
methods.

| protocol        | used by                                                     |
| --------------- | ----------------------------------------------------------- |
| Catalogue       | the email factory, preview, render: customers, orders, products |
| AudienceStore   | segments and kinds' audience hooks (compiled SQL + order reads) |
| Suppressions    | eligibility, the send path, public endpoints                |
| Ledger          | the run pipeline: runs and delivery rows                    |
| Batches         | the Celery dispatcher and its workers                       |
| Engagement      | eligibility's frequency cap, events, feedback, analytics    |
| PipelineStore   | the run pipeline (all of the above but Batches)             |
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Engine

from campaigns.status import DeliveryStatus, RunStatus
from campaigns.store.records import (
    CustomerRecord,
    OrderRecord,
    ProductEventRecord,
    ProductRecord,
    PurchaseColumns,
    PurchaseHistory,
)

if TYPE_CHECKING:
    from campaigns.store.batches import BatchProgress, BatchRecord, BatchState, MemberRef
    from campaigns.store.ledger import (
        CapRule,
        DeliveryOutcome,
        DeliveryState,
        LedgerRow,
        RunCounts,
        RunRecord,
    )


class Catalogue(Protocol):
    """Read customers, orders and products as plain records."""

    def get_customer(self, ref: int | str) -> CustomerRecord | None: ...

    def customers_by_ids(self, ids: Iterable[int]) -> dict[int, CustomerRecord]: ...

    def products_by_ids(self, ids: Iterable[int]) -> dict[int, ProductRecord]: ...

    def all_products(self) -> list[ProductRecord]: ...

    def orders_for_customers(
        self, customer_ids: Sequence[int], *, since: datetime | None = None, limit_per_customer: int = 50
    ) -> dict[int, list[OrderRecord]]: ...

    def orders_by_ids(self, order_ids: Sequence[int]) -> dict[int, OrderRecord]: ...

    def product_events(
        self, *, since: datetime | None = None, kinds: Sequence[str] | None = None
    ) -> list[ProductEventRecord]: ...

    def purchase_history(self, customer_ids: Iterable[int]) -> dict[int, PurchaseHistory]: ...


class AudienceStore(Catalogue, Protocol):
    """What audiences are built from: the engine segments compile to, and order/ledger reads."""

    @property
    def engine(self) -> Engine: ...

    @property
    def dialect(self) -> str: ...

    def orders_between(self, start: datetime, end: datetime) -> list[tuple[int, int, datetime]]: ...

    def first_orders_between(
        self, start: datetime, end: datetime
    ) -> list[tuple[int, int, datetime, int]]: ...

    def followed_up_orders(self, campaign: str, order_ids: Sequence[int]) -> set[int]: ...

    def purchase_columns(
        self, *, until: datetime | None = None, since: datetime | None = None
    ) -> PurchaseColumns: ...

    def buyers_of(self, product_ids: Iterable[int], categories: Iterable[str] = ()) -> list[int]: ...


class Suppressions(Protocol):
    """The do-not-mail list, keyed by lower-cased address."""

    def suppressed_emails(self, emails: Iterable[str | None]) -> set[str]: ...

    def suppress(
        self,
        email: str,
        reason: str,
        customer_id: int | None = None,
        campaign: str | None = None,
        detail: str | None = None,
    ) -> bool: ...


class Engagement(Protocol):
    """Events, the frequency-cap read and feedback."""

    def marketing_sends_since(
        self, customer_ids: Sequence[int], since: datetime, *, exclude_run: int | None = None
    ) -> dict[int, int]: ...

    def record_event(
        self,
        kind: str,
        *,
        customer_id: int | None = None,
        campaign: str | None = None,
        payload: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> int: ...


class Ledger(Protocol):
    """Runs and their delivery rows: claim -> send -> record, exactly once per (run, customer)."""

    def start_run(
        self,
        campaign: str,
        key: str,
        *,
        owner: str | None,
        scheduled_for: datetime | None = None,
        dispatcher: str = "local",
        is_test: bool = False,
    ) -> RunRecord: ...

    def heartbeat(self, run_id: int, owner: str) -> bool: ...

    def finish_run(
        self, run_id: int, owner: str | None, status: RunStatus, reason: str | None = None
    ) -> None: ...

    def get_run(self, key: str, campaign: str | None = None) -> RunRecord: ...

    def delivery_states(self, run_id: int, customer_ids: Sequence[int]) -> dict[int, DeliveryState]: ...

    def record_deliveries(
        self, run_id: int, campaign: str, rows: Sequence[LedgerRow], *, cap: CapRule | None = None
    ) -> dict[int, int]: ...

    def update_claims(self, rows: Sequence[LedgerRow]) -> None: ...

    def begin_sending(self, delivery_ids: Sequence[int], *, cap: CapRule | None = None) -> list[int]: ...

    def record_result(self, outcome: DeliveryOutcome, *, sender: str | None = None) -> None: ...

    def record_results(self, outcomes: Sequence[DeliveryOutcome], *, sender: str | None = None) -> None: ...

    def release_unsent(self, delivery_ids: Iterable[int]) -> int: ...

    def resolve_in_flight(self, delivery_ids: Sequence[int]) -> int: ...

    def reopen_unknown(self, delivery_ids: Sequence[int]) -> list[int]: ...

    def run_counts(self, run_id: int) -> RunCounts: ...

    def pending_deferred(self, run_id: int) -> tuple[int, datetime | None]: ...

    def due_deferred_customers(self, run_id: int, now: datetime, limit: int = 1000) -> list[int]: ...

    def customers_in_state(
        self, run_id: int, statuses: Sequence[DeliveryStatus], limit: int = 1000
    ) -> list[int]: ...


class Batches(Protocol):
    """Numbered batches of a distributed run, leased by workers."""

    def add_batches(self, run_id: int, batches: Sequence[tuple[int, Sequence[MemberRef]]]) -> int: ...

    def register_batches(
        self, run_id: int, batches: Sequence[tuple[int, Sequence[MemberRef]]]
    ) -> list[int]: ...

    def get_batch(self, run_id: int, batch_no: int) -> BatchRecord | None: ...

    def take_batch(
        self, batch_id: int, owner: str, *, expected_owner: str | None, stale_before: datetime
    ) -> bool: ...

    def batch_heartbeat(self, batch_id: int, owner: str) -> bool: ...

    def finish_batch(self, batch_id: int, owner: str) -> bool: ...

    def release_batch(self, batch_id: int, owner: str) -> None: ...

    def batch_progress(self, run_id: int) -> BatchProgress: ...

    def open_batches(self, run_id: int, *, held_only: bool = False) -> list[BatchState]: ...

    def next_batch_no(self, run_id: int) -> int: ...

    def reopen_run(self, run_id: int) -> None: ...

    def claim_run_close(self, run_id: int) -> bool: ...


class PipelineStore(AudienceStore, Suppressions, Engagement, Ledger, Protocol):
    """Everything one run of the pipeline touches (audience, eligibility, rendering, the ledger)."""


class DistributedStore(PipelineStore, Batches, Protocol):
    """A pipeline store that can also split a run into batches (the Celery dispatcher)."""


def _implements_every_protocol() -> None:  # checked by mypy only
    from campaigns.store import Store

    def check(_: DistributedStore) -> None: ...

    check(Store.__new__(Store))


__all__ = [
    "AudienceStore",
    "Batches",
    "Catalogue",
    "DistributedStore",
    "Engagement",
    "Ledger",
    "PipelineStore",
    "Suppressions",
]
