"""Customers, products, orders: the reads everything else builds on (the writer is store/importing.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any, cast

import numpy as np
from sqlalchemy import Connection, Select, Table, and_, case, distinct, func, or_, select

from campaigns.models import Customer, CustomerTag, Order, OrderLine, Product, ProductEvent, Return
from campaigns.store.base import chunked
from campaigns.store.importing import ImportStore
from campaigns.store.records import (
    CatalogCounts,
    CurrencyTotals,
    CustomerRecord,
    OrderLineRecord,
    OrderRecord,
    ProductEventRecord,
    ProductRecord,
    PurchaseColumns,
    PurchaseHistory,
)

C, P, O, L, R = (cast(Table, m.__table__) for m in (Customer, Product, Order, OrderLine, Return))
T, E = (cast(Table, m.__table__) for m in (CustomerTag, ProductEvent))


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
        region=row.region,
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
        handle=row.handle,
        image_alt=row.image_alt,
        compare_at_price=row.compare_at_price,
        status=row.status,
        published=bool(row.published),
        vendor=row.vendor,
        tags=row.tags,
        inventory_qty=row.inventory_qty,
    )


class CatalogStore(ImportStore):
    # ------------------------------------------------------------------ reads

    def customers_in_domains(self, domains: Sequence[str]) -> int:
        """How many customers have an address at one of ``domains`` (the go-live guard's demo identities)."""
        if not domains:
            return 0
        cond = or_(*[func.lower(C.c.email).like(f"%@{d.lower()}") for d in domains])
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(C).where(cond)).scalar_one())

    def catalog_counts(self) -> CatalogCounts:
        with self.engine.connect() as conn:
            one = conn.execute(
                select(
                    func.count(distinct(O.c.customer_id)),
                    func.count(),
                    func.coalesce(func.sum(O.c.total), 0.0),
                    func.min(O.c.ordered_at),
                    func.max(O.c.ordered_at),
                    func.count(O.c.total),
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
                priced_orders=one[5],
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

    def monthly_orders(self, currency: str | None = None) -> list[tuple[str, int, float, int, int]]:
        """Per month: ('YYYY-MM', orders, revenue, distinct customers, priced orders).

        ``currency`` keeps only that currency's orders (revenue is never summed across currencies).
        """
        month = self._month(O.c.ordered_at).label("m")
        q = select(
            month,
            func.count(),
            func.sum(O.c.total),
            func.count(distinct(O.c.customer_id)),
            func.count(O.c.total),
        )
        if currency is not None:
            q = q.where(O.c.currency == currency)
        with self.engine.connect() as conn:
            rows = conn.execute(q.group_by(month).order_by(month))
            return [(str(m), int(n), float(s or 0.0), int(c), int(k)) for m, n, s, c, k in rows]

    def currency_totals(self) -> list[CurrencyTotals]:
        """Orders and revenue per currency, most orders first."""
        q = (
            select(O.c.currency, func.count(), func.count(O.c.total), func.coalesce(func.sum(O.c.total), 0.0))
            .group_by(O.c.currency)
            .order_by(func.count().desc(), O.c.currency)
        )
        with self.engine.connect() as conn:
            return [CurrencyTotals(str(c), int(n), int(k), float(s)) for c, n, k, s in conn.execute(q)]

    def shop_currency(self, fallback: str) -> str:
        """The shop's currency as its data says: the currency of most orders (``fallback`` with none)."""
        totals = self.currency_totals()
        return totals[0].currency if totals else fallback

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
            rows = list(conn.execute(select(C).where(or_(*conds)).order_by(C.c.id)))
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
                select(L.c.order_id, L.c.quantity, L.c.unit_price, L.c.discount, P)
                .select_from(L.join(P, P.c.id == L.c.product_id))
                .where(L.c.order_id.in_(part))
                .order_by(L.c.order_id, L.c.line_no)
            )
            for row in conn.execute(q):
                lines.setdefault(row.order_id, []).append(
                    OrderLineRecord(
                        product_record(row),
                        int(row.quantity),
                        None if row.unit_price is None else float(row.unit_price),
                        row.discount,
                    )
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
            total=None if row.total is None else float(row.total),
            lines=tuple(lines),
            financial_status=row.financial_status,
            discount_codes=row.discount_codes,
            discount_amount=row.discount_amount,
            refunded_amount=row.refunded_amount,
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

    def product_events(
        self, *, since: datetime | None = None, kinds: Sequence[str] | None = None
    ) -> list[ProductEventRecord]:
        """Catalogue changes (back_in_stock, out_of_stock, price_drop) at or after ``since``, oldest first."""
        q = (
            select(E, P.c.sku)
            .select_from(E.join(P, P.c.id == E.c.product_id))
            .order_by(E.c.created_at, E.c.id)
        )
        if since is not None:
            q = q.where(E.c.created_at >= since)
        if kinds is not None:
            q = q.where(E.c.kind.in_(list(kinds)))
        with self.engine.connect() as conn:
            return [
                ProductEventRecord(r.id, r.product_id, r.sku, r.kind, r.old_value, r.new_value, r.created_at)
                for r in conn.execute(q)
            ]

    def purchase_history(self, customer_ids: Iterable[int]) -> dict[int, PurchaseHistory]:
        """Per customer: every product bought and the categories of those products (returns excluded)."""
        found: dict[int, tuple[set[int], set[str]]] = {}
        with self.engine.connect() as conn:
            for part in chunked(list(customer_ids), 900):
                q = (
                    select(O.c.customer_id, L.c.product_id, P.c.category)
                    .select_from(L.join(O, O.c.id == L.c.order_id).join(P, P.c.id == L.c.product_id))
                    .where(O.c.customer_id.in_(part))
                    .distinct()
                )
                for cid, pid, category in conn.execute(q):
                    ids, cats = found.setdefault(int(cid), (set(), set()))
                    ids.add(int(pid))
                    if category:
                        cats.add(str(category))
        return {cid: PurchaseHistory(frozenset(ids), frozenset(cats)) for cid, (ids, cats) in found.items()}

    def buyers_of(self, product_ids: Iterable[int], categories: Iterable[str] = ()) -> list[int]:
        """Customers who bought any of ``product_ids`` or any product of ``categories``, by id."""
        ids, cats = list(product_ids), list(categories)
        if not ids and not cats:
            return []
        match = []
        if ids:
            match.append(L.c.product_id.in_(ids))
        if cats:
            match.append(L.c.product_id.in_(select(P.c.id).where(P.c.category.in_(cats))))
        q = (
            select(O.c.customer_id)
            .select_from(L.join(O, O.c.id == L.c.order_id))
            .where(or_(*match))
            .distinct()
            .order_by(O.c.customer_id)
        )
        with self.engine.connect() as conn:
            return [int(c) for c in conn.execute(q).scalars()]

    def longest_order(self) -> OrderRecord | None:
        """The order with the most lines (the largest an order email can be), with its lines."""
        q = select(L.c.order_id).group_by(L.c.order_id).order_by(func.count().desc(), L.c.order_id).limit(1)
        with self.engine.connect() as conn:
            order_id = conn.execute(q).scalar()
        return None if order_id is None else self.orders_by_ids([int(order_id)]).get(int(order_id))

    def category_counts(self) -> dict[str, tuple[int, int]]:
        """Per category: (products, products that may be shown: active, published, in stock)."""
        shown = and_(P.c.in_stock, P.c.published, P.c.status == "active")
        q = (
            select(P.c.category, func.count(), func.sum(case((shown, 1), else_=0)))
            .where(P.c.category.is_not(None))
            .group_by(P.c.category)
        )
        with self.engine.connect() as conn:
            return {str(c): (int(n), int(k or 0)) for c, n, k in conn.execute(q)}

    def longest_named_products(self, n: int, category: str | None = None) -> list[ProductRecord]:
        """``n`` products that may be shown, the longest names first (lint's largest email)."""
        q = select(P).where(P.c.in_stock, P.c.published, P.c.status == "active")
        if category is not None:
            q = q.where(P.c.category == category)
        q = q.order_by(func.length(P.c.name).desc(), P.c.id).limit(n)
        with self.engine.connect() as conn:
            return [product_record(r) for r in conn.execute(q)]

    def customer_tags(self, customer_ids: Iterable[int]) -> dict[int, list[str]]:
        """Each customer's tags (customers without tags are absent)."""
        out: dict[int, list[str]] = {}
        with self.engine.connect() as conn:
            for part in chunked(list(customer_ids), 900):
                q = select(T.c.customer_id, T.c.tag).where(T.c.customer_id.in_(part)).order_by(T.c.tag)
                for cid, tag in conn.execute(q):
                    out.setdefault(int(cid), []).append(str(tag))
        return out

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
