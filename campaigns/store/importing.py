"""The import writer: one validated ImportBatch into the database in one transaction.

Natural keys make a re-import change nothing: customers by ``external_id``, products by ``sku``, orders by
``external_id`` (an order already present keeps its lines), returns by ``(external_id, line_no)``.

Two kinds of file write products, with different authority:

- an **orders** file (``batch.catalog`` false) creates the products it mentions and refreshes name, price
  and category only for products no catalogue import has described yet (``catalog_updated_at`` NULL);
- a **catalogue** file (``batch.catalog`` true) owns the catalogue fields and overwrites them. Comparing
  each product with what the previous catalogue import said records ``product_events``: ``back_in_stock``
  / ``out_of_stock`` (available = in stock, active and published) and ``price_drop`` (old and new price).

Consent changes only when the file states it (``consent_source`` set), says something different, and its
decision is not older than the one stored (``consent_at``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, case, delete, func, or_, select

from campaigns.models import Customer, CustomerTag, Order, OrderLine, Product, ProductEvent, Return
from campaigns.store.base import CHUNK, StoreBase, chunked, utcnow
from campaigns.store.records import ImportBatch, ProductIn, WriteCounts

C, P, O, L, R = (cast(Table, m.__table__) for m in (Customer, Product, Order, OrderLine, Return))
T, E = (cast(Table, m.__table__) for m in (CustomerTag, ProductEvent))

Progress = Callable[[int], None]

#: a price change smaller than this (rounding in an export) is not a price drop
PRICE_EPSILON = 0.005
_CATALOG_FIELDS = (
    "handle", "image_alt", "compare_at_price", "status", "published", "vendor", "tags", "inventory_qty",
)  # fmt: skip


def _available(in_stock: Any, status: Any, published: Any) -> bool:
    return bool(in_stock) and status == "active" and bool(published)


class ImportStore(StoreBase):
    def write_import(self, batch: ImportBatch, progress: Progress | None = None) -> WriteCounts:
        """Write a whole validated batch in one transaction (all or nothing); see the module docstring."""
        now = utcnow()
        with self.transaction() as conn:
            before_c = conn.execute(select(func.count()).select_from(C)).scalar_one()
            before_p = conn.execute(select(func.count()).select_from(P)).scalar_one()
            self._upsert_customers(conn, batch, now)
            cust_ids = self._id_map(conn, C.c.id, C.c.external_id, list(batch.customers))
            self._replace_tags(conn, batch, cust_ids)
            if batch.catalog:
                updated, events = self._write_catalog(conn, batch, now)
            else:
                self._upsert_order_products(conn, batch)
                updated, events = 0, Counter[str]()
            prod_ids = self._id_map(conn, P.c.id, P.c.sku, list(batch.products))
            orders_added, lines_added = self._insert_orders(conn, batch, cust_ids, prod_ids, progress)
            returns_added = self._insert_returns(conn, batch, cust_ids, prod_ids)
            after_c = conn.execute(select(func.count()).select_from(C)).scalar_one()
            after_p = conn.execute(select(func.count()).select_from(P)).scalar_one()
        return WriteCounts(
            after_c - before_c,
            after_p - before_p,
            orders_added,
            lines_added,
            returns_added,
            products_updated=updated,
            events=dict(events),
        )

    # ------------------------------------------------------------------ customers

    def _upsert_customers(self, conn: Connection, batch: ImportBatch, now: datetime) -> None:
        rows = [
            {
                "external_id": c.external_id,
                "email": c.email,
                "first_name": c.first_name,
                "last_name": c.last_name,
                "country": c.country,
                "region": c.region,
                "timezone": c.timezone,
                "marketing_consent": c.marketing_consent,
                "consent_source": c.consent_source,
                "consent_at": c.consent_at,
                "is_demo": c.is_demo,
                "created_at": now,
            }
            for c in batch.customers.values()
        ]
        for customer_rows in chunked(rows, CHUNK // 2):
            stmt = self.insert(C)
            ex = stmt.excluded
            apply = and_(
                ex.consent_source.is_not(None),
                C.c.marketing_consent != ex.marketing_consent,
                or_(C.c.consent_at.is_(None), ex.consent_at.is_(None), ex.consent_at >= C.c.consent_at),
            )
            stmt = stmt.on_conflict_do_update(
                index_elements=[C.c.external_id],
                set_={
                    "email": func.coalesce(ex.email, C.c.email),
                    "first_name": func.coalesce(ex.first_name, C.c.first_name),
                    "last_name": func.coalesce(ex.last_name, C.c.last_name),
                    "country": func.coalesce(ex.country, C.c.country),
                    "region": func.coalesce(ex.region, C.c.region),
                    "timezone": func.coalesce(ex.timezone, C.c.timezone),
                    "marketing_consent": case((apply, ex.marketing_consent), else_=C.c.marketing_consent),
                    "consent_source": case((apply, ex.consent_source), else_=C.c.consent_source),
                    "consent_at": case((apply, ex.consent_at), else_=C.c.consent_at),
                },
            )
            conn.execute(stmt, list(customer_rows))

    def _replace_tags(self, conn: Connection, batch: ImportBatch, cust_ids: dict[str, int]) -> None:
        """A file that lists a customer's tags replaces that customer's tags (a missing column leaves them)."""
        tagged = [(cust_ids[c.external_id], c.tags) for c in batch.customers.values() if c.tags is not None]
        for ids in chunked([cid for cid, _ in tagged], 900):
            conn.execute(delete(T).where(T.c.customer_id.in_(ids)))
        rows = [{"customer_id": cid, "tag": tag} for cid, tags in tagged for tag in dict.fromkeys(tags or [])]
        for rows_part in chunked(rows, CHUNK):
            conn.execute(T.insert(), list(rows_part))

    # ------------------------------------------------------------------ products

    @staticmethod
    def _product_row(p: ProductIn) -> dict[str, Any]:
        return {
            "sku": p.sku,
            "name": p.name,
            "price": p.price,
            "currency": p.currency,
            "url": p.url,
            "image_url": p.image_url,
            "category": p.category,
            "in_stock": p.in_stock,
        }

    def _upsert_order_products(self, conn: Connection, batch: ImportBatch) -> None:
        rows = [self._product_row(p) for p in batch.products.values()]
        ours = P.c.catalog_updated_at.is_(None)  # no catalogue has described it: the orders may
        for product_rows in chunked(rows, CHUNK // 2):
            stmt = self.insert(P)
            ex = stmt.excluded
            fill = {
                col: case((ours, func.coalesce(getattr(ex, col), P.c[col])), else_=P.c[col])
                for col in ("name", "price", "category", "url", "image_url")
            }
            conn.execute(stmt.on_conflict_do_update(index_elements=[P.c.sku], set_=fill), list(product_rows))

    def _write_catalog(self, conn: Connection, batch: ImportBatch, now: datetime) -> tuple[int, Counter[str]]:
        skus = list(batch.products)
        before: dict[str, Any] = {}
        cols = (P.c.sku, P.c.price, P.c.in_stock, P.c.status, P.c.published, P.c.catalog_updated_at)
        for some in chunked(skus, 900):
            before.update((row.sku, row) for row in conn.execute(select(*cols).where(P.c.sku.in_(some))))
        rows = []
        for p in batch.products.values():
            row = self._product_row(p)
            row.update({name: getattr(p, name) for name in _CATALOG_FIELDS})
            row.update(catalog_source=batch.source, catalog_updated_at=now)
            rows.append(row)
        for catalog_rows in chunked(rows, CHUNK // 4):
            stmt = self.insert(P)
            ex = stmt.excluded
            stmt = stmt.on_conflict_do_update(
                index_elements=[P.c.sku], set_={k: getattr(ex, k) for k in rows[0] if k != "sku"}
            )
            conn.execute(stmt, list(catalog_rows))
        ids = self._id_map(conn, P.c.id, P.c.sku, skus)
        events: list[dict[str, Any]] = []
        for p in batch.products.values():
            old = before.get(p.sku)
            if old is None or old.catalog_updated_at is None:
                continue  # new to the catalogue: nothing to compare with
            was = _available(old.in_stock, old.status, old.published)
            now_available = _available(p.in_stock, p.status, p.published)
            if was != now_available:
                kind = "back_in_stock" if now_available else "out_of_stock"
                events.append({"product_id": ids[p.sku], "kind": kind, "old_value": None, "new_value": None})
            if old.price is not None and p.price is not None and p.price < old.price - PRICE_EPSILON:
                events.append(
                    {
                        "product_id": ids[p.sku],
                        "kind": "price_drop",
                        "old_value": old.price,
                        "new_value": p.price,
                    }
                )
        for ev_part in chunked([{**e, "created_at": now} for e in events], CHUNK):
            conn.execute(E.insert(), list(ev_part))
        updated = sum(1 for sku in skus if sku in before)
        return updated, Counter(e["kind"] for e in events)

    @staticmethod
    def _id_map(conn: Connection, id_col: Any, key_col: Any, keys: Sequence[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for part in chunked(keys, 900):
            for row in conn.execute(select(id_col, key_col).where(key_col.in_(part))):
                out[row[1]] = row[0]
        return out

    # ------------------------------------------------------------------ orders and returns

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
        for order_ids in chunked([o.external_id for o in orders], 900):
            existing.update(
                conn.execute(select(O.c.external_id).where(O.c.external_id.in_(order_ids))).scalars()
            )
        new = [o for o in orders if o.external_id not in existing]
        lines_added = 0
        for part in chunked(new, CHUNK):
            rows = []
            for o in part:
                prices = [q * p for _, q, p in o.lines if p is not None]
                priced = len(prices) == len(o.lines)  # one unknown price: the total is unknown
                rows.append(
                    {
                        "external_id": o.external_id,
                        "customer_id": cust_ids[o.customer_key],
                        "ordered_at": o.ordered_at,
                        "currency": o.currency,
                        "total": round(sum(prices), 2) if priced else None,
                        "source": batch.source,
                        "financial_status": o.financial_status,
                        "discount_codes": o.discount_codes,
                        "discount_amount": o.discount_amount,
                        "refunded_amount": o.refunded_amount,
                    }
                )
            conn.execute(O.insert(), rows)
            ids = self._id_map(conn, O.c.id, O.c.external_id, [o.external_id for o in part])
            line_rows = [
                {
                    "order_id": ids[o.external_id],
                    "line_no": n,
                    "product_id": prod_ids[sku],
                    "quantity": qty,
                    "unit_price": price,
                    "discount": o.line_discounts.get(n - 1) if o.line_discounts else None,
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
