"""Importers on SQLite and PostgreSQL: real data figures, idempotence, hostile input, all-or-nothing."""

from __future__ import annotations

import csv
import gzip
import itertools
from pathlib import Path

import pytest

from campaigns.errors import ConfigError, ImportValidationError
from campaigns.ingest import GenericOptions, import_generic, import_online_retail, parse_mapping
from campaigns.ingest.online_retail import COLUMNS, demo_identity

from .conftest import DATA_FILE

FIXTURES = Path(__file__).parent / "fixtures"
GENERIC_MAP = "customer=Customer,order=Order,sku=Sku,date=Date,qty=Qty,price=Price,email=Email,name=Name"
GENERIC_HEADER = "Customer,Order,Sku,Date,Qty,Price,Email,Name\n"


def head_of_real_file(tmp_path: Path, lines: int) -> Path:
    """The first ``lines`` data lines of the bundled file, as a plain CSV."""
    target = tmp_path / "head.csv"
    with (
        gzip.open(DATA_FILE, "rt", encoding="utf-8", newline="") as src,
        open(target, "w", newline="") as dst,
    ):
        for line in itertools.islice(src, lines + 1):
            dst.write(line)
    return target


def empty(store: object) -> bool:
    c = store.catalog_counts()  # type: ignore[attr-defined]
    return (c.customers_total, c.products, c.orders, c.order_lines, c.returns) == (0, 0, 0, 0, 0)


def write(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode(encoding))
    return p


# -- the real file ------------------------------------------------------------------------------


def test_online_retail_slice_matches_pandas_cleaning(store: object, tmp_path: Path) -> None:
    import pandas as pd

    path = head_of_real_file(tmp_path, 20_000)
    summary = import_online_retail(store, path)
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    kept = df[(df.CustomerID != "") & ~df.InvoiceNo.str.startswith(("C", "A"))]
    kept = kept[(kept.Quantity.astype(int) > 0) & (kept.UnitPrice.astype(float) > 0)]
    kept = kept[
        ~kept.StockCode.str.upper().isin(
            ["POST", "D", "M", "C2", "DOT", "BANK CHARGES", "AMAZONFEE", "S", "PADS", "CRUK", "B"]
        )
    ]
    counts = store.catalog_counts()  # type: ignore[attr-defined]
    assert counts.order_lines == len(kept) == summary.order_lines_added
    assert counts.orders == kept.InvoiceNo.nunique()
    assert counts.customers_with_orders == kept.CustomerID.nunique()
    assert summary.rows_read == 20_000
    assert summary.set_aside["no_customer_id"] == (df.CustomerID == "").sum()
    assert counts.revenue == pytest.approx(
        (kept.Quantity.astype(int) * kept.UnitPrice.astype(float)).sum(), rel=1e-9
    )
    cancellations = df[(df.CustomerID != "") & df.InvoiceNo.str.startswith("C")]
    assert counts.returns > 0 and counts.returns <= len(cancellations)


def test_reimport_changes_nothing(store: object, tmp_path: Path) -> None:
    path = head_of_real_file(tmp_path, 3_000)
    first = import_online_retail(store, path)
    before = store.catalog_counts()  # type: ignore[attr-defined]
    second = import_online_retail(store, path)
    assert first.orders_added > 0
    assert (second.customers_added, second.products_added, second.orders_added, second.order_lines_added) == (
        0,
        0,
        0,
        0,
    )
    assert second.returns_added == 0
    assert store.catalog_counts() == before  # type: ignore[attr-defined]


def test_demo_identity_is_deterministic_and_reserved() -> None:
    email, first, last = demo_identity("17850")
    assert email == "customer-17850@example.com"
    assert demo_identity("17850") == (email, first, last)
    assert demo_identity("12347") != demo_identity("17850")


def test_demo_customers_have_consent_from_demo_import(sqlite_store: object, tmp_path: Path) -> None:
    import_online_retail(sqlite_store, head_of_real_file(tmp_path, 500))
    customer = sqlite_store.get_customer("17850")  # type: ignore[attr-defined]
    assert customer is not None
    assert customer.email == "customer-17850@example.com"
    assert customer.is_demo and customer.marketing_consent and customer.consent_source == "demo-import"
    assert customer.country == "United Kingdom" and customer.timezone == "Europe/London"


# -- generic ------------------------------------------------------------------------------------


def test_generic_with_mapping_delimiter_and_date_format(store: object, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "orders.csv",
        "Cust;No;Code;When;N;Each;Mail\n"
        "c1;o1;A-1;03/02/2024 10:00;2;4,50;c1@example.com\n"
        "c1;o1;B-2;03/02/2024 10:00;1;10,00;c1@example.com\n"
        "c2;o2;A-1;05/02/2024 12:30;1;4,50;\n",
    )
    mapping = parse_mapping("customer=Cust,order=No,sku=Code,date=When,qty=N,price=Each,email=Mail")
    summary = import_generic(store, path, mapping, delimiter=";", date_format="%d/%m/%Y %H:%M")
    assert (summary.orders_added, summary.order_lines_added, summary.customers_added) == (2, 3, 2)
    c1 = store.get_customer("c1")  # type: ignore[attr-defined]
    order = store.orders_for_customers([c1.id])[c1.id][0]  # type: ignore[attr-defined]
    assert order.total == pytest.approx(19.0)
    assert order.ordered_at.month == 2 and order.ordered_at.day == 3


def test_mapping_errors_are_clear() -> None:
    with pytest.raises(ConfigError, match="must name the date column"):
        GenericOptions(parse_mapping("customer=a,order=b,sku=c,qty=e")).check()
    with pytest.raises(ConfigError, match="unknown field 'colour'"):
        parse_mapping("colour=x")
    with pytest.raises(ConfigError, match="mapped twice"):
        parse_mapping("sku=a,sku=b")


# -- hostile input: clear errors, nothing written -------------------------------------------------

OK_ROW = "c1,o1,S1,2024-01-02 10:00:00,1,2.50,a@example.com,Ann Lee\n"

HOSTILE = {
    "renamed column": ("Customer,Order,SKU,Date,Qty,Price,Email,Name\n" + OK_ROW, r":1: missing column\(s\) 'Sku'"),
    "bad date": (GENERIC_HEADER + "c1,o1,S1,02/01/2024,1,2.5,a@example.com,Ann\n", r":2: Date: is not a date"),
    "bad number": (GENERIC_HEADER + "c1,o1,S1,2024-01-02,one,2.5,a@example.com,Ann\n", r":2: Qty: is not a number"),
    "negative price": (GENERIC_HEADER + "c1,o1,S1,2024-01-02,1,-2.5,a@example.com,Ann\n", r":2: Price: must not be negative"),
    "bad email": (GENERIC_HEADER + "c1,o1,S1,2024-01-02,1,2.5,not-an-email,Ann\n", r":2: Email: is not a valid email"),
    "CRLF in name": (GENERIC_HEADER + 'c1,o1,S1,2024-01-02,1,2.5,a@example.com,"Ann\r\nBcc: x@evil.test"\n', r"Name: contains control characters"),
    "control char in email": (GENERIC_HEADER + "c1,o1,S1,2024-01-02,1,2.5,a\x07@example.com,Ann\n", r"Email: contains control characters"),
    "duplicate line": (GENERIC_HEADER + OK_ROW + OK_ROW, r":3: \(row\): repeats line 2 .*--aggregate-duplicates"),
    "empty file": ("", r"the file is empty"),
    "header only": (GENERIC_HEADER, r"has a header but no rows"),
    "wrong delimiter": (GENERIC_HEADER.replace(",", ";") + OK_ROW.replace(",", ";"), r"looks ';'-delimited: pass --delimiter"),
    "short row": (GENERIC_HEADER + "c1,o1,S1\n", r":2: \(row\): has 3 fields"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_generic_input_is_rejected_whole(store: object, tmp_path: Path, case: str) -> None:
    text, pattern = HOSTILE[case]
    # a valid row first: it must not be written either
    if text.startswith(GENERIC_HEADER) and case not in {"header only", "duplicate line"}:
        text = (
            GENERIC_HEADER
            + "c0,o0,S0,2024-01-01 09:00:00,1,1.00,z@example.com,Zed\n"
            + text[len(GENERIC_HEADER) :]
        )
        pattern = pattern.replace(":2:", ":3:")
    path = write(tmp_path, "in.csv", text)
    with pytest.raises(ImportValidationError, match=pattern) as info:
        import_generic(store, path, parse_mapping(GENERIC_MAP))
    assert str(path) in str(info.value)
    assert "Traceback" not in str(info.value)
    assert empty(store)


def test_bom_is_accepted(sqlite_store: object, tmp_path: Path) -> None:
    path = write(tmp_path, "bom.csv", "\ufeff" + GENERIC_HEADER + OK_ROW)
    summary = import_generic(sqlite_store, path, parse_mapping(GENERIC_MAP))
    assert summary.order_lines_added == 1


def test_not_utf8_is_a_clear_error(sqlite_store: object, tmp_path: Path) -> None:
    path = write(
        tmp_path, "latin1.csv", GENERIC_HEADER + "c1,o1,S1,2024-01-02,1,2.5,a@example.com,Zoë\n", "latin-1"
    )
    with pytest.raises(ImportValidationError, match="not valid utf-8"):
        import_generic(sqlite_store, path, parse_mapping(GENERIC_MAP))
    assert empty(sqlite_store)


def test_error_list_is_capped_at_20_with_a_count(sqlite_store: object, tmp_path: Path) -> None:
    rows = "".join(f"c{i},o{i},S1,not-a-date,1,2.5,a@example.com,Ann\n" for i in range(45))
    path = write(tmp_path, "many.csv", GENERIC_HEADER + rows)
    with pytest.raises(ImportValidationError) as info:
        import_generic(sqlite_store, path, parse_mapping(GENERIC_MAP))
    message = str(info.value)
    assert info.value.total == 45
    assert message.count("Date: is not a date") == 20
    assert "and 25 more" in message


def test_skip_invalid_writes_rejects_with_reasons(store: object, tmp_path: Path) -> None:
    path = write(
        tmp_path, "mixed.csv", GENERIC_HEADER + OK_ROW + "c2,o2,S2,2024-01-03,x,1,b@example.com,Bo\n"
    )
    rejects = tmp_path / "rejects.csv"
    summary = import_generic(store, path, parse_mapping(GENERIC_MAP), skip_invalid=True, rejects_path=rejects)
    assert summary.order_lines_added == 1 and summary.rejected == 1
    with open(rejects, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1
    assert (
        rows[0]["_line"] == "3"
        and "Qty: is not a number" in rows[0]["_reason"]
        and rows[0]["Customer"] == "c2"
    )


def test_online_retail_missing_column(sqlite_store: object, tmp_path: Path) -> None:
    header = ",".join(c for c in COLUMNS if c != "UnitPrice")
    path = write(
        tmp_path, "or.csv", header + "\n536365,85123A,X,6,2010-12-01 08:26:00,17850,United Kingdom\n"
    )
    with pytest.raises(ImportValidationError, match="missing column\\(s\\) 'UnitPrice'"):
        import_online_retail(sqlite_store, path)
    assert empty(sqlite_store)


def test_missing_file(sqlite_store: object, tmp_path: Path) -> None:
    with pytest.raises(ImportValidationError, match="file not found"):
        import_online_retail(sqlite_store, tmp_path / "nope.csv")
