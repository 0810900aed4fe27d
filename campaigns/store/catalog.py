"""Customers, products, orders: the import writer and the reads everything else builds on."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Connection, Select, and_, case, distinct, func, or_, select

from campaigns.models import Customer, Order, OrderLine, Product, Return
from campaigns.store.base import CHUNK, StoreBase, chunked, utcnow
from campaigns.store.records import (
    CatalogCounts,
    CustomerRecord,
    ImportBatch,
    OrderLineRecord,
    OrderRecord,
    ProductRecord,
    PurchaseColumns,
    WriteCounts,
)

C, P, O, L, R = Customer.__table__, Product.__table__, Order.__table__, OrderLine.__table__, Return.__table__

Progress = Callable[[int], None]


def customer_record(row: Any) -> CustomerRecord:
    return CustomerRecord(
        id=row.id,
        external_id=row.external_id,
        email=row.email,
        first_name=row.first_name,
        last_name=row.last_name,
        country=row.country,
        timezone=row.timezone,
        marketing_consent=bool(row.marketing_consent),
        consent_source=row.consent_source,
        is_demo=bool(row.is_demo),
    )


def product_record(row: Any) -> ProductRecord:
    return ProductRecord(
        id=row.id,
        sku=row.sku,
        name=row.name,
        price=row.price,
        currency=row.currency,
        url=row.url,
        image_url=row.image_url,
        category=row.category,
        in_stock=bool(row.in_stock),
    )


class CatalogStore(StoreBase):
    # ------------------------------------------------------------------ writes

    def write_import(self, batch: ImportBatch, progress: Progress | None = None) -> WriteCounts:
        """Write a whole validated batch in one transaction (all or nothing).

        Natural keys make a re-import change nothing: customers by ``external_id`` (details updated),
        products by ``sku`` (name/price updated), orders by ``external_id`` (existing orders and their
        lines are left alone), returns by ``(external_id, line_no)``.
        """
        now = utcnow()
        with self.transaction() as conn:
            before_c = conn.execute(select(func.count()).select_from(C)).scalar_one()
            before_p = conn.execute(select(func.count()).select_from(P)).scalar_one()
            self._upsert_customers(conn, batch, now)
            self._upsert_products(conn, batch)
            cust_ids = self._id_map(conn, C.c.id, C.c.external_id, list(batch.customers))
            prod_ids = self._id_map(conn, P.c.id, P.c.sku, list(batch.products))
            orders_added, lines_added = self._insert_orders(conn, batch, cust_ids, prod_ids, progress)
            returns_added = self._insert_returns(conn, batch, cust_ids, prod_ids)
            after_c = conn.execute(select(func.count()).select_from(C)).scalar_one()
            after_p = conn.execute(select(func.count()).select_from(P)).scalar_one()
        return WriteCounts(after_c - before_c, after_p - before_p, orders_added, lines_added, returns_added)

    def _upsert_customers(self, conn: Connection, batch: ImportBatch, now: datetime) -> None:
        rows = [
            {
                "external_id": c.external_id,
                "email": c.email,
                "first_name": c.first_name,
                "last_name": c.last_name,
                "country": c.country,
                "timezone": c.timezone,
                "marketing_consent": c.marketing_consent,
                "consent_source": c.consent_source,
                "consent_at": c.consent_at,
                "is_demo": c.is_demo,
                "created_at": now,
            }
            for c in batch.customers.values()
        ]
        for part in chunked(rows, CHUNK // 2):
            stmt = self.insert(C)
            ex = stmt.excluded
            changed = C.c.marketing_consent != ex.marketing_consent
            stmt = stmt.on_conflict_do_update(
                index_elements=[C.c.external_id],
                set_={
                    "email": func.coalesce(ex.email, C.c.email),
                    "first_name": func.coalesce(ex.first_name, C.c.first_name),
                    "last_name": func.coalesce(ex.last_name, C.c.last_name),
                    "country": func.coalesce(ex.country, C.c.country),
                    "timezone": func.coalesce(ex.timezone, C.c.timezone),
                    # consent changes only when the file says something different
                    "marketing_consent": ex.marketing_consent,
                    "consent_source": case((changed, ex.consent_source), else_=C.c.consent_source),
                    "consent_at": case((changed, ex.consent_at), else_=C.c.consent_at),
                },
            )
            conn.execute(stmt, list(part))

    def _upsert_products(self, conn: Connection, batch: ImportBatch) -> None:
        rows = [
            {
                "sku": p.sku,
                "name": p.name,
                "price": p.price,
                "currency": p.currency,
                "url": p.url,
                "image_url": p.image_url,
                "category": p.category,
                "in_stock": p.in_stock,
            }
            for p in batch.products.values()
        ]
        for part in chunked(rows, CHUNK // 2):
            stmt = self.insert(P)
            ex = stmt.excluded
            stmt = stmt.on_conflict_do_update(
                index_elements=[P.c.sku],
                set_={
                    "name": ex.name,
                    "price": func.coalesce(ex.price, P.c.price),
                    "category": func.coalesce(ex.category, P.c.category),
                    "url": func.coalesce(ex.url, P.c.url),
                    "image_url": func.coalesce(ex.image_url, P.c.image_url),
                },
            )
            conn.execute(stmt, list(part))

    @staticmethod
    def _id_map(conn: Connection, id_col: Any, key_col: Any, keys: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in chunked(keys, 900):
            for row in conn.execute(select(id_col, key_col).where(key_col.in_(part))):
                out[row[1]] = row[0]
        return out

    def _insert_orders(
        self,
        conn: Connection,
        batch: ImportBatch,
        cust_ids: dict[str, int],
        prod_ids: dict[str, int],
        progress: Progress | None,
    ) -> tuple[int, int]:
        orders = list(batch.orders.values())
        existing: set[str] = set()
        for part in chunked([o.external_id for o in orders], 900):
            existing.update(conn.execute(select(O.c.external_id).where(O.c.external_id.in_(part))).scalars())
        new = [o for o in orders if o.external_id not in existing]
        lines_added = 0
        for part in chunked(new, CHUNK):
            rows = [
                {
                    "external_id": o.external_id,
                    "customer_id": cust_ids[o.customer_key],
                    "ordered_at": o.ordered_at,
                    "currency": o.currency,
                    "total": round(sum(q * p for _, q, p in o.lines), 2),
                    "source": batch.source,
                }
                for o in part
            ]
            conn.execute(O.insert(), rows)
            ids = self._id_map(conn, O.c.id, O.c.external_id, [o.external_id for o in part])
            line_rows = [
                {
                    "order_id": ids[o.external_id],
                    "line_no": n,
                    "product_id": prod_ids[sku],
                    "quantity": qty,
                    "unit_price": price,
                }
                for o in part
                for n, (sku, qty, price) in enumerate(o.lines, start=1)
            ]
            for lpart in chunked(line_rows, 5_000):
                conn.execute(L.insert(), list(lpart))
            lines_added += len(line_rows)
            if progress:
                progress(sum(len(o.lines) for o in part))
        return len(new), lines_added

    def _insert_returns(
        self, conn: Connection, batch: ImportBatch, cust_ids: dict[str, int], prod_ids: dict[str, int]
    ) -> int:
        rows = [
            {
                "external_id": r.external_id,
                "line_no": r.line_no,
                "customer_id": cust_ids[r.customer_key],
                "product_id": prod_ids[r.sku],
                "quantity": r.quantity,
                "unit_price": r.unit_price,
                "returned_at": r.returned_at,
            }
            for r in batch.returns
        ]
        added = 0
        for part in chunked(rows, CHUNK):
            stmt = self.insert(R).on_conflict_do_nothing(index_elements=[R.c.external_id, R.c.line_no])
            added += conn.execute(stmt, list(part)).rowcount or 0
        return max(added, 0)

    # ------------------------------------------------------------------ reads

    def catalog_counts(self) -> CatalogCounts:
        with self.engine.connect() as conn:
            one = conn.execute(
                select(
                    func.count(distinct(O.c.customer_id)),
                    func.count(),
                    func.coalesce(func.sum(O.c.total), 0.0),
                    func.min(O.c.ordered_at),
                    func.max(O.c.ordered_at),
                ).select_from(O)
            ).one()
            return CatalogCounts(
                customers_with_orders=one[0],
                customers_total=conn.execute(select(func.count()).select_from(C)).scalar_one(),
                products=conn.execute(select(func.count()).select_from(P)).scalar_one(),
                orders=one[1],
                order_lines=conn.execute(select(func.count()).select_from(L)).scalar_one(),
                returns=conn.execute(select(func.count()).select_from(R)).scalar_one(),
                revenue=float(one[2]),
                first_order_at=one[3],
                last_order_at=one[4],
            )

    def products_bought_count(self) -> int:
        """Distinct products with at least one purchase line."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count(distinct(L.c.product_id)))).scalar_one())

    def orders_per_customer(self) -> dict[int, int]:
        """How many customers have exactly n orders: ``{n: customers}``."""
        per_customer = select(O.c.customer_id, func.count().label("n")).group_by(O.c.customer_id).subquery()
        with self.engine.connect() as conn:
            rows = conn.execute(select(per_customer.c.n, func.count()).group_by(per_customer.c.n))
            return {int(n): int(k) for n, k in rows}

    def _month(self, col: Any) -> Any:
        if self.dialect == "postgresql":
            return func.to_char(col, "YYYY-MM")
        return func.strftime("%Y-%m", col)

    def customer_months(self) -> list[tuple[int, str]]:
        """Distinct (customer id, 'YYYY-MM') pairs with at least one order in that month."""
        month = self._month(O.c.ordered_at)
        with self.engine.connect() as conn:
            rows = conn.execute(select(O.c.customer_id, month).group_by(O.c.customer_id, month))
            return [(int(c), str(m)) for c, m in rows]

    def monthly_orders(self) -> list[tuple[str, int, float, int]]:
        """Per month: ('YYYY-MM', orders, revenue, distinct customers)."""
        month = self._month(O.c.ordered_at).label("m")
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(month, func.count(), func.sum(O.c.total), func.count(distinct(O.c.customer_id)))
                .group_by(month)
                .order_by(month)
            )
            return [(str(m), int(n), float(s or 0.0), int(c)) for m, n, s, c in rows]

    def iter_purchase_columns(
        self, *, until: datetime | None = None, since: datetime | None = None, chunk: int = 250_000
    ) -> Iterator[PurchaseColumns]:
        """Stream every purchase line as numpy columns, ``chunk`` rows at a time (returns excluded)."""
        stmt: Select[Any] = (
            select(
                O.c.customer_id, L.c.product_id, L.c.order_id, O.c.ordered_at, L.c.quantity, L.c.unit_price
            )
            .select_from(L.join(O, O.c.id == L.c.order_id))
            .order_by(L.c.id)
        )
        if until is not None:
            stmt = stmt.where(O.c.ordered_at < until)
        if since is not None:
            stmt = stmt.where(O.c.ordered_at >= since)
        with self.engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=chunk).execute(stmt)
            for part in result.partitions(chunk):
                cols = list(zip(*part, strict=True))
                yield PurchaseColumns(
                    np.asarray(cols[0], dtype=np.int64),
                    np.asarray(cols[1], dtype=np.int64),
                    np.asarray(cols[2], dtype=np.int64),
                    np.asarray(cols[3], dtype="datetime64[s]"),
                    np.asarray(cols[4], dtype=np.float64),
                    np.asarray(cols[5], dtype=np.float64),
                )

    def purchase_columns(
        self, *, until: datetime | None = None, since: datetime | None = None
    ) -> PurchaseColumns:
        return PurchaseColumns.concat(list(self.iter_purchase_columns(until=until, since=since)))

    def returns_only_customer_ids(self) -> list[int]:
        """Customers who returned something but never bought (in this database)."""
        with self.engine.connect() as conn:
            q = select(distinct(R.c.customer_id)).where(~R.c.customer_id.in_(select(O.c.customer_id)))
            return [int(x) for x in conn.execute(q).scalars()]

    def get_customer(self, ref: int | str) -> CustomerRecord | None:
        """A customer by database id, external id or email (case-insensitive)."""
        conds = [C.c.external_id == str(ref), func.lower(C.c.email) == str(ref).lower()]
        if isinstance(ref, int) or str(ref).isdigit():
            conds.append(C.c.id == int(ref))
        with self.engine.connect() as conn:
            rows = conn.execute(select(C).where(or_(*conds)).order_by(C.c.id)).all()
        if not rows:
            return None
        # a numeric ref prefers the database id, then the shop's own id
        rows.sort(key=lambda r: 0 if str(r.id) == str(ref) else 1 if r.external_id == str(ref) else 2)
        return customer_record(rows[0])

    def customers_by_ids(self, ids: Iterable[int]) -> dict[int, CustomerRecord]:
        out: dict[int, CustomerRecord] = {}
        with self.engine.connect() as conn:
            for part in chunked(list(ids), 900):
                for row in conn.execute(select(C).where(C.c.id.in_(part))):
                    out[row.id] = customer_record(row)
        return out

    def iter_customers(self, batch_size: int = 1_000) -> Iterator[list[CustomerRecord]]:
        """Every customer in id order, ``batch_size`` at a time (keyset paging, flat memory)."""
        last = 0
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(select(C).where(C.c.id > last).order_by(C.c.id).limit(batch_size)).all()
            if not rows:
                return
            yield [customer_record(r) for r in rows]
            last = rows[-1].id

    def products_by_ids(self, ids: Iterable[int]) -> dict[int, ProductRecord]:
        out: dict[int, ProductRecord] = {}
        with self.engine.connect() as conn:
            for part in chunked(list(ids), 900):
                for row in conn.execute(select(P).where(P.c.id.in_(part))):
                    out[row.id] = product_record(row)
        return out

    def all_products(self) -> list[ProductRecord]:
        with self.engine.connect() as conn:
            return [product_record(r) for r in conn.execute(select(P).order_by(P.c.id))]

    def get_product(self, sku: str) -> ProductRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(P).where(P.c.sku == sku)).first()
        return product_record(row) if row else None

    def set_product_stock(self, sku: str, in_stock: bool) -> bool:
        with self.transaction() as conn:
            return bool(conn.execute(P.update().where(P.c.sku == sku).values(in_stock=in_stock)).rowcount)

    def orders_for_customers(
        self, customer_ids: Sequence[int], *, since: datetime | None = None, limit_per_customer: int = 50
    ) -> dict[int, list[OrderRecord]]:
        """Recent orders (newest first) with their lines, for a batch of customers."""
        out: dict[int, list[OrderRecord]] = {cid: [] for cid in customer_ids}
        with self.engine.connect() as conn:
            for part in chunked(list(customer_ids), 500):
                q = (
                    select(O)
                    .where(O.c.customer_id.in_(part))
                    .order_by(O.c.customer_id, O.c.ordered_at.desc())
                )
                if since is not None:
                    q = q.where(O.c.ordered_at >= since)
                kept: list[Any] = []
                per: dict[int, int] = {}
                for o in conn.execute(q):
                    if per.get(o.customer_id, 0) < limit_per_customer:
                        per[o.customer_id] = per.get(o.customer_id, 0) + 1
                        kept.append(o)
                lines = self._lines_for(conn, [o.id for o in kept])
                for o in kept:
                    out[o.customer_id].append(self._order_record(o, lines.get(o.id, [])))
        return out

    def orders_by_ids(self, order_ids: Sequence[int]) -> dict[int, OrderRecord]:
        """Orders with their lines, by id (missing ids are absent from the result)."""
        out: dict[int, OrderRecord] = {}
        with self.engine.connect() as conn:
            for part in chunked(list(order_ids), 900):
                rows = conn.execute(select(O).where(O.c.id.in_(part))).all()
                lines = self._lines_for(conn, [r.id for r in rows])
                out.update((r.id, self._order_record(r, lines.get(r.id, []))) for r in rows)
        return out

    def get_order(self, order_id: int) -> OrderRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(O).where(O.c.id == order_id)).first()
            if row is None:
                return None
            return self._order_record(row, self._lines_for(conn, [order_id]).get(order_id, []))

    def _lines_for(self, conn: Connection, order_ids: Sequence[int]) -> dict[int, list[OrderLineRecord]]:
        lines: dict[int, list[OrderLineRecord]] = {}
        for part in chunked(list(order_ids), 900):
            q = (
                select(L.c.order_id, L.c.quantity, L.c.unit_price, P)
                .select_from(L.join(P, P.c.id == L.c.product_id))
                .where(L.c.order_id.in_(part))
                .order_by(L.c.order_id, L.c.line_no)
            )
            for row in conn.execute(q):
                lines.setdefault(row.order_id, []).append(
                    OrderLineRecord(product_record(row), int(row.quantity), float(row.unit_price))
                )
        return lines

    @staticmethod
    def _order_record(row: Any, lines: list[OrderLineRecord]) -> OrderRecord:
        return OrderRecord(
            id=row.id,
            external_id=row.external_id,
            customer_id=row.customer_id,
            ordered_at=row.ordered_at,
            currency=row.currency,
            total=float(row.total),
            lines=tuple(lines),
        )

    def orders_between(self, start: datetime, end: datetime) -> list[tuple[int, int, datetime]]:
        """(order id, customer id, ordered_at) for orders with start <= ordered_at < end."""
        with self.engine.connect() as conn:
            q = (
                select(O.c.id, O.c.customer_id, O.c.ordered_at)
                .where(and_(O.c.ordered_at >= start, O.c.ordered_at < end))
                .order_by(O.c.ordered_at, O.c.id)
            )
            return [(int(a), int(b), c) for a, b, c in conn.execute(q)]

    def first_orders_between(self, start: datetime, end: datetime) -> list[tuple[int, int, datetime, int]]:
        """(order id, customer id, ordered_at, the customer's order count) of every customer whose FIRST
        order falls in start <= ordered_at < end (a welcome or first-purchase follow-up's audience)."""
        first = (
            select(
                O.c.customer_id.label("cid"),
                func.min(O.c.ordered_at).label("first_at"),
                func.count().label("n"),
            )
            .group_by(O.c.customer_id)
            .having(and_(func.min(O.c.ordered_at) >= start, func.min(O.c.ordered_at) < end))
            .subquery()
        )
        with self.engine.connect() as conn:
            q = (
                select(func.min(O.c.id), O.c.customer_id, first.c.first_at, first.c.n)
                .select_from(
                    O.join(first, and_(O.c.customer_id == first.c.cid, O.c.ordered_at == first.c.first_at))
                )
                .group_by(O.c.customer_id, first.c.first_at, first.c.n)
                .order_by(first.c.first_at, O.c.customer_id)
            )
            return [(int(a), int(b), c, int(n)) for a, b, c, n in conn.execute(q)]
