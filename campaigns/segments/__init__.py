"""Audiences: named segments (``segments.yaml`` or a campaign's front matter) compiled to SQL.

    segments = load_segments(Path("segments.yaml"))
    vip = resolve_segment("vip", segments)
    now = reference_now(settings, store)
    count_segment(store, vip, now=now)                 # -> 434
    for batch in iter_segment(store, vip, now=now):    # lists of CustomerRecord, ids ascending
        ...

Rules and their exact definitions: :mod:`campaigns.segments.definitions` and docs/segments.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from campaigns.models import Customer
from campaigns.segments.compiler import measure_population, segment_query, shop_median_gap
from campaigns.segments.definitions import (
    DEFAULT_SEGMENT,
    DEFAULT_SEGMENTS_FILE,
    RULE_KEYS,
    SegmentDef,
    load_segments,
    resolve_segment,
    validate_rules,
)
from campaigns.store.catalog import customer_record
from campaigns.store.records import CustomerRecord

C = Customer.__table__

#: customer ids examined per paged query (at least ``batch_size``)
SCAN_SIZE = 5_000


@dataclass(frozen=True, slots=True)
class SegmentMember:
    """A customer in a segment with the aggregates the segment was judged on."""

    customer: CustomerRecord
    orders: int
    spend: float
    first_order_at: datetime
    last_order_at: datetime


def count_segment(store: Any, segment: SegmentDef, *, now: datetime) -> int:
    """How many customers are in ``segment`` at ``now`` (orders after ``now`` are ignored)."""
    with store.engine.connect() as conn:
        pop = measure_population(conn, segment.rules, now)
        query = segment_query(segment.rules, pop, now, columns=[C.c.id], dialect=store.dialect).order_by(None)
        return int(conn.execute(select(func.count()).select_from(query.subquery())).scalar_one())


def iter_segment(
    store: Any, segment: SegmentDef, *, now: datetime, batch_size: int = 500
) -> Iterator[list[CustomerRecord]]:
    """The members in batches of ``batch_size`` (the last may be shorter), by ascending customer id.

    Keyset-paged: each query aggregates only the orders of the next ``SCAN_SIZE`` customer ids,
    and no connection is held between batches, so memory stays flat and the consumer may write
    to the store while iterating. Shop-wide cut points are measured once, at the start.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    scan = max(batch_size, SCAN_SIZE)
    with store.engine.connect() as conn:
        pop = measure_population(conn, segment.rules, now)
    lo: int | None = None
    buffer: list[CustomerRecord] = []
    while True:
        with store.engine.connect() as conn:
            after = [C.c.id > lo] if lo is not None else []
            hi = conn.execute(
                select(C.c.id).where(*after).order_by(C.c.id).limit(1).offset(scan - 1)
            ).scalar()
            rows = conn.execute(
                segment_query(segment.rules, pop, now, lo=lo, hi=hi, dialect=store.dialect)
            ).all()
        for row in rows:
            buffer.append(customer_record(row))
            if len(buffer) == batch_size:
                yield buffer
                buffer = []
        if hi is None:
            break
        lo = hi
    if buffer:
        yield buffer


def sample_segment(store: Any, segment: SegmentDef, *, now: datetime, limit: int = 10) -> list[SegmentMember]:
    """The first ``limit`` members (lowest customer ids) with their order count, spend and dates."""
    with store.engine.connect() as conn:
        pop = measure_population(conn, segment.rules, now)
        rows = conn.execute(segment_query(segment.rules, pop, now, dialect=store.dialect).limit(limit)).all()
    return [
        SegmentMember(customer_record(r), int(r.n), float(r.spend or 0.0), r.first_at, r.last_at)
        for r in rows
    ]


def shop_usual_gap(store: Any, *, now: datetime, kind: str = "median") -> float | None:
    """The shop-wide fallback gap in days (median over repeat customers of their usual gap)."""
    with store.engine.connect() as conn:
        return shop_median_gap(conn, now, kind)


__all__ = [
    "DEFAULT_SEGMENT",
    "DEFAULT_SEGMENTS_FILE",
    "RULE_KEYS",
    "SegmentDef",
    "SegmentMember",
    "count_segment",
    "iter_segment",
    "load_segments",
    "resolve_segment",
    "sample_segment",
    "shop_usual_gap",
    "validate_rules",
]
