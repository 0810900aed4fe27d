"""Hostile input: import files (Online Retail, groceries-style generic CSV, Shopify export quirks), config,
CSV outputs and the CLI. Each case asserts the clear message (no traceback) and an unchanged database;
a hypothesis fuzz feeds every importer arbitrary bytes."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from campaigns.cli import main
from campaigns.errors import RetainError
from campaigns.store import Store
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn

ROOT = Path(__file__).resolve().parent.parent
ONLINE_RETAIL = ROOT / "data" / "online_retail.csv.gz"
GROCERIES = Path("/work/shared/data/groceries/groceries.csv.gz")
FIXTURES = Path(__file__).parent / "fixtures"
SHOPIFY_ORDERS = FIXTURES / "shopify_orders_export.csv"
GROCERY_ARGS = ["--format", "generic", "--no-header", "--map", "customer=1,date=2,product_name=3",
                "--date-format", "%d-%m-%Y", "--basket-by", "customer,date", "--aggregate-duplicates"]  # fmt: skip


def _head(path: Path, lines: int) -> list[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:  # type: ignore[operator]
        return [next(fh) for _ in range(lines)]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run `retain` in-process on a fresh SQLite database; returns (status, stdout, stderr)."""
    db = tmp_path / "shop.db"
    (tmp_path / "retain.toml").write_text("")
    monkeypatch.setenv("RETAIN_CONFIG", str(tmp_path / "retain.toml"))
    monkeypatch.setenv("RETAIN_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("RETAIN_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("RETAIN_TEMPLATES_DIR", str(ROOT / "templates"))
    monkeypatch.setenv("RETAIN_SEGMENTS_FILE", str(ROOT / "segments.yaml"))

    class Cli:
        url = f"sqlite:///{db}"
        folder = tmp_path

        def __call__(self, *argv: str) -> tuple[int, str, str]:
            status = main(list(argv))
            captured = capsys.readouterr()
            assert "Traceback" not in captured.err, captured.err
            return status, captured.out, captured.err

        def counts(self) -> tuple[int, ...]:
            store = Store.open(self.url)
            try:
                c = store.catalog_counts()
                return (c.customers_total, c.orders, c.order_lines, c.returns, store.products_bought_count())
            finally:
                store.close()

    return Cli()


def _seed(cli: Any) -> tuple[int, ...]:
    """A real first import, so "unchanged" is checked against data, not an empty database."""
    path = cli.folder / "seed.csv"
    path.write_text("".join(_head(ONLINE_RETAIL, 40)))
    status, _, err = cli("import", "online-retail", str(path))
    assert status == 0, err
    before = cli.counts()
    assert before[1] > 0
    return before  # type: ignore[no-any-return]


def _online_retail(cli: Any, name: str, edit: dict[int, dict[str, str]], gz: bool = False) -> Path:
    """The real file's first rows with some cells of data row N (1-based) changed."""
    rows = list(csv.DictReader(io.StringIO("".join(_head(ONLINE_RETAIL, 12)))))
    for n, change in edit.items():
        rows[n - 1].update(change)
    out = io.StringIO()
    w = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    path = cli.folder / name
    if gz:
        path.write_bytes(gzip.compress(out.getvalue().encode()))
    else:
        path.write_text(out.getvalue())
    return path


# ------------------------------------------------------------------ Online Retail CSV

ONLINE_RETAIL_CASES = [
    ({3: {"Quantity": "1e30"}}, r":4: Quantity: is out of range \(at most 1,000,000\): '1e30'"),
    ({2: {"InvoiceDate": "9999-12-31 08:26:00"}}, r":3: InvoiceDate: is more than 365 days in the future"),
    ({2: {"InvoiceDate": "0001-01-01 08:26:00"}}, r":3: InvoiceDate: is before 1970-01-01"),
    ({5: {"UnitPrice": "1e400"}}, r":6: UnitPrice: is not a finite number"),
    ({5: {"UnitPrice": "123456789012345"}}, r":6: UnitPrice: is out of range"),
    ({1: {"CustomerID": "1e300"}}, r":2: CustomerID: is out of range"),
    ({4: {"Quantity": "nan"}}, r":5: Quantity: is not a finite number"),
]


@pytest.mark.parametrize(("edit", "message"), ONLINE_RETAIL_CASES)
def test_online_retail_bad_values_are_messages(
    cli: Any, edit: dict[int, dict[str, str]], message: str
) -> None:
    before = _seed(cli)
    path = _online_retail(cli, "bad.csv", edit)
    status, _, err = cli("import", "online-retail", str(path))
    assert status == 1 and re.search(message, err), err
    assert "nothing was imported" in err
    assert cli.counts() == before


def test_truncated_gzip_names_file_and_line(cli: Any) -> None:
    before = _seed(cli)
    data = gzip.compress("".join(_head(ONLINE_RETAIL, 3000)).encode())
    path = cli.folder / "cut.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    status, _, err = cli("import", "online-retail", str(path))
    assert status == 1 and "Traceback" not in err
    assert re.search(r"cut\.csv\.gz:\d+: the file cannot be read past line [1-9]\d*", err), err
    assert "truncated or corrupt compressed file" in err and "download or export the file again" in err
    assert cli.counts() == before


def test_not_a_gzip_file(cli: Any) -> None:
    before = _seed(cli)
    path = cli.folder / "fake.csv.gz"
    path.write_bytes(b"InvoiceNo,StockCode\n1,2\n")
    status, _, err = cli("import", "online-retail", str(path))
    assert status == 1 and "fake.csv.gz: cannot read: Not a gzipped file" in err
    assert cli.counts() == before


def test_rejects_file_neutralises_formulas(cli: Any) -> None:
    before = _seed(cli)
    formula = '=HYPERLINK("http://evil.example","click")'
    path = _online_retail(
        cli, "mixed.csv", {2: {"Description": formula, "Quantity": "x"}, 3: {"Country": "@SUM(A1)"}}
    )
    rejects = cli.folder / "rejects.csv"
    status, out, err = cli("import", "online-retail", str(path), "--skip-invalid", "--rejects", str(rejects))
    assert status == 0, err
    rows = list(csv.reader(io.StringIO(rejects.read_text(encoding="utf-8"), newline="")))
    assert rows[0][:2] == ["_line", "_reason"]
    cells = [c for r in rows for c in r]
    assert "'" + formula in cells and formula not in cells
    assert not any(c.startswith(("=", "+", "@", "\t", "\r")) for c in cells)
    assert cli.counts() == before  # the valid rows are the seed's own: re-importing them changes nothing


# ------------------------------------------------------------------ groceries-style generic CSV


def _groceries(cli: Any, name: str, replace: dict[int, str], gz: bool = False) -> Path:
    lines = _head(GROCERIES, 30)
    for n, text in replace.items():
        lines[n - 1] = text + "\n"
    path = cli.folder / name
    data = "".join(lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


GROCERY_CASES = [
    (
        {4: "1808,31-12-9999,tropical fruit"},
        r":4: column 2 \(date\): is more than 365 days in the future: '31-12-9999'",
    ),
    ({5: "1808,31-12-1899,whole milk"}, r":5: column 2 \(date\): is before 1970-01-01: '31-12-1899'"),
    ({6: "1808,31-02-2015,whole milk"}, r":6: column 2 \(date\): is not a date \(--date-format %d-%m-%Y\)"),
    ({7: "99999999999999999999999999,05-01-2015,whole milk"}, None),  # a long id is just an id
]


@pytest.mark.skipif(not GROCERIES.exists(), reason="the groceries data set lives in ../shared")
@pytest.mark.parametrize(("replace", "message"), GROCERY_CASES)
def test_groceries_bad_dates_are_messages(cli: Any, replace: dict[int, str], message: str | None) -> None:
    before = _seed(cli)
    path = _groceries(cli, "g.csv", replace)
    status, _, err = cli("import", "orders", str(path), *GROCERY_ARGS, "--currency", "EUR")
    if message is None:
        assert status == 0, err
        return
    assert status == 1 and re.search(message, err), err
    assert cli.counts() == before


@pytest.mark.skipif(not GROCERIES.exists(), reason="the groceries data set lives in ../shared")
def test_groceries_quantity_out_of_range(cli: Any) -> None:
    before = _seed(cli)
    path = cli.folder / "q.csv"
    lines = [
        f"{line.strip()},{'99999999999' if i == 2 else '1'}\n" for i, line in enumerate(_head(GROCERIES, 10))
    ]
    path.write_text("".join(lines))
    args = [
        a if a != "customer=1,date=2,product_name=3" else "customer=1,date=2,product_name=3,qty=4"
        for a in GROCERY_ARGS
    ]
    status, _, err = cli("import", "orders", str(path), *args, "--currency", "EUR")
    assert status == 1 and re.search(r":3: column 4 \(qty\): is out of range \(at most 1,000,000\)", err), err
    assert cli.counts() == before


@pytest.mark.skipif(not GROCERIES.exists(), reason="the groceries data set lives in ../shared")
def test_groceries_truncated_gzip(cli: Any) -> None:
    before = _seed(cli)
    raw = GROCERIES.read_bytes()
    path = cli.folder / "groceries-cut.csv.gz"
    path.write_bytes(raw[: len(raw) // 3])
    status, _, err = cli("import", "orders", str(path), *GROCERY_ARGS, "--currency", "EUR")
    assert status == 1 and re.search(
        r"groceries-cut\.csv\.gz:\d+: the file cannot be read past line \d+", err
    )
    assert cli.counts() == before


@pytest.mark.skipif(not GROCERIES.exists(), reason="the groceries data set lives in ../shared")
def test_date_bounds_are_configurable(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _groceries(cli, "old.csv", {3: "1808,31-12-1960,whole milk"})
    status, _, err = cli("import", "orders", str(path), *GROCERY_ARGS, "--currency", "EUR")
    assert status == 1 and "is before 1970-01-01" in err
    monkeypatch.setenv("RETAIN_IMPORT_EARLIEST_DATE", "1950-01-01")
    status, _, err = cli("import", "orders", str(path), *GROCERY_ARGS, "--currency", "EUR")
    assert status == 0, err


# ------------------------------------------------------------------ Shopify export quirks


def _shopify(cli: Any, name: str, change: dict[str, str]) -> Path:
    header, *rows = list(csv.reader(io.StringIO(SHOPIFY_ORDERS.read_text(encoding="utf-8"), newline="")))
    for key, value in change.items():
        rows[0][header.index(key)] = value
    path = cli.folder / name
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])
    return path


SHOPIFY_CASES = [
    ({"Lineitem quantity": "99999999999"}, r":2: Lineitem quantity: is out of range \(at most 1,000,000\)"),
    ({"Created at": "9999-12-31 10:15:42 +0000"}, r":2: Created at: is more than 365 days in the future"),
    ({"Created at": "0001-01-01 00:00:00 +0100"}, r":2: Created at: is out of range"),
    ({"Lineitem price": "1e13"}, r":2: Lineitem price: is out of range"),
]


@pytest.mark.parametrize(("change", "message"), SHOPIFY_CASES)
def test_shopify_bad_values_are_messages(cli: Any, change: dict[str, str], message: str) -> None:
    before = _seed(cli)
    path = _shopify(cli, "orders_export.csv", change)
    status, _, err = cli("import", "orders", str(path), "--format", "shopify")
    assert status == 1 and re.search(message, err), err
    assert cli.counts() == before


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    ("toml", "message", "secret"),
    [
        (
            "smtp_password = 918273645\n",
            "setting 'smtp_password' must be str, got (hidden: a secret)",
            "918273645",
        ),
        ("[security]\nsecret_key = 55512345678\n", "setting 'secret_key' must be str", "55512345678"),
        ("import_earliest_date = 'last year'\n", "setting 'import_earliest_date' must be an ISO date", None),
    ],
)
def test_config_errors_never_echo_a_secret(
    cli: Any, monkeypatch: pytest.MonkeyPatch, toml: str, message: str, secret: str | None
) -> None:
    before = _seed(cli)
    (cli.folder / "retain.toml").write_text(toml)
    status, out, err = cli("stats")
    assert status == 1 and message in err, err
    if secret:
        assert secret not in err + out
    monkeypatch.setenv("RETAIN_CONFIG", str(cli.folder / "empty.toml"))
    (cli.folder / "empty.toml").write_text("")
    assert cli.counts() == before


# ------------------------------------------------------------------ stored data never crashes the reports


def _extreme_shop(url: str) -> None:
    store = Store.open(url)
    try:
        batch = ImportBatch(source="test")
        batch.products["P"] = ProductIn("P", "[/x] [red]odd[/red]", 1e300, "GBP")
        batch.customers["c1"] = CustomerIn(
            "c1", email="c1@shop.co.uk", first_name="[/x]", marketing_consent=True
        )
        batch.customers["c2"] = CustomerIn(
            "c2", email="c2@shop.co.uk", first_name="Bo", marketing_consent=True
        )
        batch.orders["o1"] = OrderIn(
            "o1", "c1", datetime(9999, 12, 31, 8, 0), "GBP", [("P", 2_000_000_000, 1e300)]
        )
        batch.orders["o2"] = OrderIn("o2", "c2", datetime(1, 1, 1, 0, 0), "GBP", [("P", 1, 1e300)])
        batch.orders["o3"] = OrderIn("o3", "c2", datetime(2024, 5, 1), "GBP", [("P", 1, 1e300)])
        store.write_import(batch)
    finally:
        store.close()


def test_extreme_stored_data_never_crashes_reports(cli: Any) -> None:
    _extreme_shop(cli.url)
    status, out, err = cli("stats")
    assert status == 0, err
    status, out, err = cli("stats", "--json")
    assert status == 0, err
    assert "Infinity" not in out and "NaN" not in out
    report = json.loads(out)
    assert report["last_order_at"].startswith("9999-12-31") and report["revenue"] is None
    for argv in (
        ["segments"],
        ["segments", "--json"],
        ["segment", "active-buyers", "--sample", "5", "--json"],
    ):
        status, out, err = cli(*argv)
        assert status == 0, (argv, err)
        assert "Infinity" not in out and "NaN" not in out


def test_extreme_stored_data_never_crashes_the_dashboard(tmp_path: Path) -> None:
    from .test_web import make_shop, preview_client

    store, s = make_shop(tmp_path)
    store.close()
    _extreme_shop(s.database_url)
    store = Store.open(s.database_url)
    try:
        with preview_client(store, s) as client:
            for path in ("/dashboard", "/dashboard?days=36500"):
                page = client.get(path)
                assert page.status_code == 200, page.text[:500]
                assert "Traceback" not in page.text
    finally:
        store.close()


# ------------------------------------------------------------------ CLI output and CSV reports


def test_rich_markup_in_a_file_name_is_printed_literally(cli: Any) -> None:
    src = cli.folder / "seed.csv"
    src.write_text("".join(_head(ONLINE_RETAIL, 6)))
    odd = cli.folder / "[red]x[bold] [link=http:].csv"
    shutil.copy(src, odd)
    status, out, err = cli("import", "online-retail", str(odd))
    assert status == 0, err
    assert "[red]x[bold] [link=http:].csv" in out


def test_dry_run_report_and_run_key_are_safe(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from campaigns.config import Settings
    from campaigns.training import train_model

    from .synthetic import AS_OF, make_shop

    store = Store.open(cli.url)
    try:
        make_shop(store, customers=16)
        batch = ImportBatch(source="synthetic")
        batch.customers["C000001"] = CustomerIn(
            "C000001", email="cust1@example.com", first_name='=HYPERLINK("http://evil.example","x")',
            timezone="Europe/London", marketing_consent=True, consent_source="test",
        )  # fmt: skip
        store.write_import(batch)
        monkeypatch.setenv("RETAIN_AS_OF", AS_OF.isoformat())
        monkeypatch.setenv("RETAIN_MODEL_PATH", str(tmp_path / "model" / "m"))
        monkeypatch.setenv("RETAIN_QUIET_HOURS", "")
        monkeypatch.setenv("RETAIN_FREQUENCY_CAP", "0")
        train_model(
            store,
            Settings(
                var_dir=str(tmp_path / "var"),
                model_path=str(tmp_path / "model" / "m"),
                as_of=AS_OF.isoformat(),
            ),
        )
    finally:
        store.close()
    report = tmp_path / "report.csv"
    status, out, err = cli(
        "send", "weekly-picks", "--dry-run", "--out", str(report), "--run-key", "[/x][bold]"
    )
    assert status == 0, err
    assert "([/x][bold])" in out  # printed as written, not parsed as markup
    rows = list(csv.reader(io.StringIO(report.read_text(encoding="utf-8"), newline="")))
    subjects = [r[4] for r in rows[1:] if r[4]]
    assert any(s.startswith("'=HYPERLINK") for s in subjects), subjects[:3]
    assert not any(c.startswith(("=", "+", "@", "\t", "\r")) for r in rows for c in r)


@pytest.mark.parametrize(
    ("cell", "written"),
    [("=1+2", "'=1+2"), ("+cmd", "'+cmd"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"),
     ("\rx", "'\rx"), ("-3", "-3"), ("+4.95", "+4.95"), ("plain", "plain"), (7, 7), (-1.5, -1.5)],
)  # fmt: skip
def test_csvsafe_cells(cell: Any, written: Any) -> None:
    from campaigns.csvsafe import safe_cell

    assert safe_cell(cell) == written


def test_every_csv_writer_goes_through_csvsafe() -> None:
    offenders = []
    for path in sorted((ROOT / "campaigns").rglob("*.py")):
        if path.name == "csvsafe.py":
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"csv\.(writer|DictWriter)\(|\.to_csv\(", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


# ------------------------------------------------------------------ fuzz: any bytes -> a message, never a traceback

OR_HEADER = b"InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
SHOPIFY_HEADER = SHOPIFY_ORDERS.read_bytes().split(b"\n", 1)[0] + b"\n"
CUSTOMERS_HEADER = (FIXTURES / "shopify_customers_export.csv").read_bytes().split(b"\n", 1)[0] + b"\n"
PRODUCTS_HEADER = (FIXTURES / "shopify_products_export.csv").read_bytes().split(b"\n", 1)[0] + b"\n"
WOO_HEADER = (FIXTURES / "woocommerce_products.csv").read_bytes().split(b"\n", 1)[0] + b"\n"
CATALOG_HEADER = b"Code,Title,Price,Stock\n"
#: cells a hostile or broken file has: numbers at every scale, odd dates, separators, controls, formulas
CELL = st.one_of(
    st.sampled_from(["1e30", "-1e400", "nan", "9999-12-31 23:59:59", "0001-01-01", "31-12-9999", "1,234.5",
                     "4,95", "=HYPERLINK(1)", "", "\x00", "\r\n", '"', "2011-12-09 12:50:00", "17850", "3",
                     "2024-03-01 10:15:42 +0000", "[/x]", "99999999999999999999"]),
    st.text(max_size=12),
)  # fmt: skip
ROW = st.lists(CELL, min_size=1, max_size=10).map(
    lambda cells: ",".join(cells).encode("utf-8", "replace") + b"\n"
)
BODY = st.one_of(st.binary(max_size=300), st.lists(ROW, max_size=6).map(b"".join))


def _importers(store: Any, tmp: Path) -> dict[str, tuple[bytes, Any]]:
    from campaigns.ingest import GenericOptions, import_generic, import_online_retail, import_shopify
    from campaigns.ingest.catalog import CatalogOptions, import_catalog
    from campaigns.ingest.shopify_customers import import_shopify_customers

    rej = {"skip_invalid": True, "rejects_path": tmp / "rejects.csv"}
    shop = CatalogOptions("https://shop.co.uk")
    generic = GenericOptions({"customer": "1", "date": "2", "product_name": "3"}, date_format="%d-%m-%Y",
                             header=False, basket_by="customer,date", aggregate_duplicates=True)  # fmt: skip
    return {
        "online-retail": (OR_HEADER, lambda p: import_online_retail(store, p, **rej)),
        "generic": (b"", lambda p: import_generic(store, p, generic, **rej)),
        "shopify": (SHOPIFY_HEADER, lambda p: import_shopify(store, p, **rej)),
        "customers": (CUSTOMERS_HEADER, lambda p: import_shopify_customers(store, p, **rej)),
        "shopify-products": (PRODUCTS_HEADER, lambda p: import_catalog(store, p, "shopify", shop, **rej)),
        "woocommerce": (WOO_HEADER, lambda p: import_catalog(store, p, "woocommerce", shop, **rej)),
        "generic-catalog": (
            CATALOG_HEADER,
            lambda p: import_catalog(
                store,
                p,
                "generic",
                CatalogOptions(
                    "https://shop.co.uk",
                    mapping={"sku": "Code", "name": "Title", "price": "Price", "inventory_qty": "Stock"},
                ),
                **rej,
            ),
        ),  # fmt: skip
    }


@pytest.mark.parametrize(
    "importer",
    [
        "online-retail",
        "generic",
        "shopify",
        "customers",
        "shopify-products",
        "woocommerce",
        "generic-catalog",
    ],
)
def test_fuzz_every_importer(importer: str, tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'fuzz.db'}")
    header, run = _importers(store, tmp_path)[importer]

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(body=BODY, with_header=st.booleans(), gz=st.booleans(), cut=st.integers(0, 40))
    def fuzz(body: bytes, with_header: bool, gz: bool, cut: int) -> None:
        data = (header if with_header else b"") + body
        if gz:
            data = gzip.compress(data)
            data = data[: len(data) - cut] if cut < len(data) else data
        path = tmp_path / ("in.csv.gz" if gz else "in.csv")
        path.write_bytes(data)
        try:
            run(path)
        except RetainError as exc:
            assert str(exc)  # a message for the user

    try:
        fuzz()
    finally:
        store.close()


def test_date_bounds_default_is_a_year_ahead() -> None:
    from campaigns.ingest.base import RowError, parse_datetime

    ok = (datetime.now() + timedelta(days=300)).strftime("%Y-%m-%d")
    assert parse_datetime(ok, "d").year >= 2026
    too_far = (datetime.now() + timedelta(days=400)).strftime("%Y-%m-%d")
    with pytest.raises(RowError, match="more than 365 days in the future"):
        parse_datetime(too_far, "d")
