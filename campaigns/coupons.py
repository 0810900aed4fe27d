"""Unique single-use coupon codes, one per recipient of a run: generated, or taken from an imported pool.

Front matter (campaigns with a ``promotion:``; the code replaces ``promotion.code`` in the email, and
``coupon_code`` is in the context)::

    coupons: {prefix: "SPRING-", length: 8}   # generated: SPRING-7KQ4ZP2M
    coupons: {pool: true}                     # from `retain coupons import CAMPAIGN FILE`

Generated codes use :data:`ALPHABET` (no look-alikes: no 0/O, 1/I/L) and ``secrets``. A code is assigned
in the ``coupon_codes`` table exactly once per (campaign, run, customer) before that customer's email is
built; a resumed run re-uses it. When the pool has fewer free codes than a batch needs, the run pauses
(:class:`CouponPoolExhausted`) before any message of that batch is built or sent: import more codes and
rerun the same command. ``retain coupons export`` writes the issued codes (CSV, formula-safe) for upload
to the shop; redemptions are matched from imported orders' discount codes (Shopify "Discount Code").
"""

from __future__ import annotations

import csv
import io
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaigns import csvsafe
from campaigns.csvsafe import safe_cell
from campaigns.errors import ImportValidationError, SenderPausedError

if TYPE_CHECKING:
    from campaigns.definition import FrontMatter

#: no 0/O, 1/I/L: a code read aloud or typed from a phone is typed right
ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{3,63}$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9_-]{0,20}$")
#: the column names a pool file's code may be under (Shopify's bulk discount export writes "Code")
CODE_COLUMNS = ("code", "discount code", "coupon", "coupon code")


class CouponPoolExhausted(SenderPausedError):
    """Too few free pool codes for the next batch: the run pauses before sending it (rerun to resume)."""


@dataclass(frozen=True)
class CouponSpec:
    prefix: str = ""
    length: int = 8
    pool: bool = False


def generate_code(spec: CouponSpec) -> str:
    return spec.prefix + "".join(secrets.choice(ALPHABET) for _ in range(spec.length))


def parse_coupons(fm: FrontMatter, options: Any) -> CouponSpec | None:
    if "coupons" not in fm.data:
        return None
    if "promotion" not in options:
        raise fm.fail("coupons", "'coupons' needs a kind with a promotion (e.g. kind: promotion)")
    raw = fm.mapping("coupons", {"prefix", "length", "pool"})
    if raw.get("pool") is True:
        if set(raw) != {"pool"}:
            raise fm.fail(
                "coupons", "coupons: {pool: true} takes no prefix or length (the pool has the codes)"
            )
        return CouponSpec(pool=True)
    if "pool" in raw:
        raise fm.fail(
            "coupons", "coupons.pool must be true (codes imported with `retain coupons import`)", "pool"
        )
    prefix = raw.get("prefix", "")
    if not isinstance(prefix, str) or not _PREFIX_RE.match(prefix):
        raise fm.fail("coupons", "coupons.prefix: up to 20 letters, digits, '-' or '_'", "prefix")
    length = fm.number("coupons", "length", raw.get("length", 8), integer=True, low=6)
    if length > 32:
        raise fm.fail("coupons", "coupons.length must be between 6 and 32", "length")
    return CouponSpec(prefix=prefix, length=int(length))


def read_pool(path: Path) -> list[str]:
    """The codes of a pool file: one per line, or a CSV with a Code column. All-or-nothing:
    ImportValidationError naming every bad or repeated line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportValidationError(str(path), [f"{path}: cannot read the file ({exc})"]) from None
    rows = list(csv.reader(io.StringIO(text)))
    column, start = 0, 0
    if rows and len(rows[0]) > 1 or (rows and rows[0] and rows[0][0].strip().lower() in CODE_COLUMNS):
        header = [h.strip().lower() for h in rows[0]]
        found = [i for i, h in enumerate(header) if h in CODE_COLUMNS]
        if not found:
            raise ImportValidationError(
                str(path), [f"{path}:1: no code column (expected one of: {', '.join(CODE_COLUMNS)})"]
            )
        column, start = found[0], 1
    problems: list[str] = []
    seen: dict[str, int] = {}
    codes: list[str] = []
    for n, row in enumerate(rows[start:], start=start + 1):
        if not row or not any(cell.strip() for cell in row):
            continue
        code = row[column].strip() if column < len(row) else ""
        if not CODE_RE.match(code):
            problems.append(f"{path}:{n}: code {code!r} is malformed (4 to 64 letters, digits, '-' or '_')")
            continue
        key = code.upper()
        if key in seen:
            problems.append(f"{path}:{n}: code {code!r} repeats line {seen[key]}")
            continue
        seen[key] = n
        codes.append(code)
    if problems:
        raise ImportValidationError(str(path), problems)
    if not codes:
        raise ImportValidationError(str(path), [f"{path}: no codes found"])
    return codes


def write_export(rows: Iterable[Sequence[object]], header: Sequence[str]) -> str:
    """The export CSV as text, through :mod:`campaigns.csvsafe` (no cell a spreadsheet runs as a formula)."""
    out = io.StringIO()
    writer = csvsafe.writer(out, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(["" if v is None else v for v in row])
    return out.getvalue()


def split_discount_codes(value: str | None) -> list[str]:
    """An order's discount codes (Shopify joins several with commas), upper-cased for matching."""
    return [c.strip().upper() for c in (value or "").split(",") if c.strip()]


__all__ = [
    "ALPHABET",
    "CouponPoolExhausted",
    "CouponSpec",
    "generate_code",
    "parse_coupons",
    "read_pool",
    "safe_cell",
    "split_discount_codes",
    "write_export",
]
