"""Unique coupon codes (campaigns/coupons.py): the pool, assignment once per (campaign, run, customer),
the export and redemptions matched from imported orders' discount codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Table, func, select, update

from campaigns.coupons import CouponPoolExhausted, CouponSpec, generate_code, split_discount_codes
from campaigns.errors import ImportValidationError
from campaigns.models import CouponCode, Customer, Order
from campaigns.store.base import StoreBase, chunked, utcnow

CC, CU, OR = (cast(Table, m.__table__) for m in (CouponCode, Customer, Order))
DEFAULT_VARIANT = "default"


class CouponStore(StoreBase):
    def import_coupon_pool(self, campaign: str, codes: Sequence[str], *, source: str = "pool file") -> int:
        """Add ``codes`` to the campaign's pool, all or nothing; ImportValidationError naming codes already known."""
        wanted = {c.upper(): c for c in codes}
        now = utcnow()
        with self.transaction() as conn:
            known: list[str] = []
            for part in chunked(list(wanted), 500):
                known += [
                    str(c) for (c,) in conn.execute(select(CC.c.code).where(func.upper(CC.c.code).in_(part)))
                ]
            if known:
                shown = [
                    f"{source}: code {c!r} is already in Retain (each code can be issued once)" for c in known
                ]
                raise ImportValidationError(source, shown)
            rows = [{"campaign": campaign, "code": c, "source": "pool", "created_at": now} for c in codes]
            for batch in chunked(rows, 1_000):
                conn.execute(CC.insert(), list(batch))
        return len(codes)

    def coupon_pool_free(self, campaign: str) -> int:
        q = select(func.count()).where(
            CC.c.campaign == campaign, CC.c.source == "pool", CC.c.customer_id.is_(None)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(q).scalar() or 0)

    def assign_coupons(
        self, campaign: str, run_key: str, members: Sequence[tuple[int, str | None]], spec: CouponSpec
    ) -> dict[int, str]:
        """customer -> their code for this run: the one already assigned, else a new one (pool or generated).

        Raises CouponPoolExhausted (nothing assigned) when the pool has too few free codes for the new ones.
        """
        ids = [cid for cid, _ in members]
        variants = dict(members)
        out: dict[int, str] = {}
        with self.engine.connect() as conn:
            for part in chunked(ids, 500):
                q = select(CC.c.customer_id, CC.c.code).where(
                    CC.c.campaign == campaign, CC.c.run_key == run_key, CC.c.customer_id.in_(part)
                )
                out.update({int(c): str(code) for c, code in conn.execute(q)})
        need = [cid for cid in ids if cid not in out]
        if not need:
            return out
        now = utcnow()
        if spec.pool:
            for _attempt in range(5):
                with self.transaction() as conn:
                    q = (
                        select(CC.c.id, CC.c.code)
                        .where(CC.c.campaign == campaign, CC.c.source == "pool", CC.c.customer_id.is_(None))
                        .order_by(CC.c.id)
                        .limit(len(need))
                    )
                    if self.dialect == "postgresql":
                        q = q.with_for_update(skip_locked=True)
                    free = conn.execute(q).all()
                    if len(free) < len(need):
                        raise CouponPoolExhausted(
                            f"the coupon pool of {campaign} has {len(free)} free codes for the next {len(need)} "
                            f"recipients: nothing more was sent; import more with `retain coupons import {campaign} FILE`, "
                            "then rerun the same command to resume"
                        )
                    taken: dict[int, str] = {}
                    for (row_id, code), cid in zip(free, need, strict=False):
                        got = conn.execute(
                            update(CC)
                            .where(CC.c.id == row_id, CC.c.customer_id.is_(None))
                            .values(
                                run_key=run_key, customer_id=cid, variant=variants.get(cid), assigned_at=now
                            )
                        ).rowcount
                        if not got:
                            break  # another process took it: start over
                        taken[cid] = str(code)
                    else:
                        out.update(taken)
                        return out
                    conn.rollback()
            raise CouponPoolExhausted(
                f"could not take codes from the pool of {campaign} (busy); rerun to resume"
            )
        for cid in need:
            for _attempt in range(10):
                code = generate_code(spec)
                stmt = self.insert(CC).on_conflict_do_nothing()
                with self.transaction() as conn:
                    got = conn.execute(
                        stmt,
                        {
                            "campaign": campaign,
                            "code": code,
                            "source": "generated",
                            "run_key": run_key,
                            "customer_id": cid,
                            "variant": variants.get(cid),
                            "created_at": now,
                            "assigned_at": now,
                        },  # fmt: skip
                    ).rowcount
                    if got:
                        out[cid] = code
                        break
                    # a clash on (campaign, run, customer): another process assigned this customer first
                    row = conn.execute(
                        select(CC.c.code).where(
                            CC.c.campaign == campaign, CC.c.run_key == run_key, CC.c.customer_id == cid
                        )
                    ).scalar()
                    if row is not None:
                        out[cid] = str(row)
                        break
        return out

    def issued_coupons(self, campaign: str) -> list[dict[str, Any]]:
        """Every assigned code of the campaign with its customer and run, oldest first, and the order that used it."""
        q = (
            select(
                CC.c.code,
                CC.c.source,
                CC.c.run_key,
                CC.c.variant,
                CC.c.assigned_at,
                CU.c.external_id,
                CU.c.email,
            )
            .select_from(CC.join(CU, CU.c.id == CC.c.customer_id))
            .where(CC.c.campaign == campaign, CC.c.customer_id.is_not(None))
            .order_by(CC.c.assigned_at, CC.c.id)
        )
        used = self._redeemed_orders(campaign)
        with self.engine.connect() as conn:
            return [
                {
                    "code": code,
                    "source": source,
                    "run_key": run,
                    "variant": variant,
                    "assigned_at": at,
                    "customer": ext,
                    "email": email,
                    "redeemed_by_order": used.get(code.upper()),
                }  # fmt: skip
                for code, source, run, variant, at, ext, email in conn.execute(q)
            ]

    def _redeemed_orders(self, campaign: str) -> dict[str, str]:
        """Upper-cased assigned code -> external id of the first order that used it."""
        with self.engine.connect() as conn:
            codes = {
                str(c).upper()
                for (c,) in conn.execute(
                    select(CC.c.code).where(CC.c.campaign == campaign, CC.c.customer_id.is_not(None))
                )
            }
            if not codes:
                return {}
            q = (
                select(OR.c.external_id, OR.c.discount_codes)
                .where(OR.c.discount_codes.is_not(None))
                .order_by(OR.c.ordered_at, OR.c.id)
            )
            used: dict[str, str] = {}
            for ext, value in conn.execute(q):
                for code in split_discount_codes(value):
                    if code in codes and code not in used:
                        used[code] = str(ext)
        return used

    def coupon_redemptions(self, campaign: str) -> dict[str, int]:
        """Variant -> orders that used one of the campaign's assigned codes (campaigns/report.py)."""
        used = self._redeemed_orders(campaign)
        if not used:
            return {}
        out: dict[str, int] = {}
        with self.engine.connect() as conn:
            q = select(CC.c.code, CC.c.variant).where(
                CC.c.campaign == campaign, CC.c.customer_id.is_not(None)
            )
            for code, variant in conn.execute(q):
                if str(code).upper() in used:
                    key = variant or DEFAULT_VARIANT
                    out[key] = out.get(key, 0) + 1
        return out


__all__ = ["CouponStore"]
