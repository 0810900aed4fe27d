"""Generic imports that build baskets: the Groceries data set (no order id, no price, no header), order ids
that span customers or days, duplicates, line totals, decimal commas, IDN addresses; SQLite and PostgreSQL."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from campaigns.analytics import kpi_report
from campaigns.errors import ConfigError, ImportValidationError
from campaigns.ingest import GenericOptions, import_generic, parse_mapping
from campaigns.ingest.base import RowError
from campaigns.ingest.numbers import NumberFormat
from campaigns.ingest.orders import product_key_from_name

GROCERIES = Path(__file__).resolve().parents[2] / "shared" / "data" / "groceries" / "groceries.csv.gz"
if not GROCERIES.exists():  # a clone outside /work/clones: the shared copy by its absolute path
    GROCERIES = Path("/work/shared/data/groceries/groceries.csv.gz")
GROCERY_MAP = {"customer": "1", "date": "2", "product_name": "3"}


def groceries_options(**changes: object) -> GenericOptions:
    base = dict(header=False, date_format="%d-%m-%Y", basket_by="customer,date", aggregate_duplicates=True)
    base.update(changes)
    return GenericOptions(dict(GROCERY_MAP), **base)  # type: ignore[arg-type]


def write(tmp_path: Path, text: str, name: str = "in.csv") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def counts(store: object) -> tuple[int, int, int, int]:
    c = store.catalog_counts()  # type: ignore[attr-defined]
    return c.customers_total, c.products, c.orders, c.order_lines


# -- the Groceries data set: the real test of --basket-by and --aggregate-duplicates ------------------


@pytest.mark.skipif(not GROCERIES.exists(), reason=f"{GROCERIES} is not on this machine")
def test_groceries_import_as_member_day_baskets(store: object) -> None:
    import pandas as pd

    summary = import_generic(store, GROCERIES, groceries_options())
    df = pd.read_csv(GROCERIES, header=None, names=["member", "date", "item"], dtype=str)
    per_line = df.groupby(["member", "date", "item"]).size()
    assert summary.rows_read == len(df) == 38_765
    assert counts(store) == (
        df.member.nunique(),
        df.item.nunique(),
        df.groupby(["member", "date"]).ngroups,
        len(per_line),
    )
    assert summary.set_aside["duplicate_lines_added_up"] == len(df) - len(per_line)
    assert any("no prices" in note for note in summary.notes)
    # repeated rows of one item on one day became quantity, not lost
    cols = store.purchase_columns()  # type: ignore[attr-defined]
    assert cols.quantity.sum() == len(df)
    assert int(cols.quantity.max()) == int(per_line.max())
    report = kpi_report(store)
    assert report.orders == 14_963 and report.orders_without_prices == 14_963
    assert report.revenue == 0.0 and report.average_order_value is None
    whole_milk = store.get_product("whole-milk")  # type: ignore[attr-defined]
    assert whole_milk is not None and whole_milk.price is None and whole_milk.name == "whole milk"
    assert whole_milk.category is None  # nothing invented


@pytest.mark.skipif(not GROCERIES.exists(), reason=f"{GROCERIES} is not on this machine")
def test_groceries_without_aggregate_duplicates_names_the_option(sqlite_store: object) -> None:
    with pytest.raises(
        ImportValidationError, match=r"repeats line \d+ .*pass --aggregate-duplicates"
    ) as info:
        import_generic(sqlite_store, GROCERIES, groceries_options(aggregate_duplicates=False))
    assert info.value.total == 759
    assert counts(sqlite_store) == (0, 0, 0, 0)


def test_basket_by_customer_datetime_keeps_two_visits_of_one_day_apart(store: object, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "who,when,what\nm1,2024-05-01 09:00,milk\nm1,2024-05-01 09:00,bread\nm1,2024-05-01 18:30,milk\n",
    )
    mapping = parse_mapping("customer=who,date=when,product_name=what")
    import_generic(store, path, GenericOptions(mapping, basket_by="customer,datetime"))
    assert counts(store) == (1, 2, 2, 3)


# -- order ids that are not order ids ----------------------------------------------------------------

HEADER = "Customer,Order,Sku,Date,Qty,Price\n"
MAP = "customer=Customer,order=Order,sku=Sku,date=Date,qty=Qty,price=Price"


def test_an_order_spanning_two_customers_is_refused_naming_both_lines(store: object, tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "c1,1001,A,2024-01-02,1,2.50\nc2,1001,B,2024-01-02,1,3.00\n")
    with pytest.raises(ImportValidationError, match=r":3: Order: order '1001' is customer 'c1'.s on line 2"):
        import_generic(store, path, parse_mapping(MAP))
    assert counts(store) == (0, 0, 0, 0)


def test_an_order_spanning_two_days_is_refused(store: object, tmp_path: Path) -> None:
    # order mapped to the customer column: a customer's whole history would have become one order
    path = write(tmp_path, HEADER + "c1,c1,A,2024-01-02,1,2.50\nc1,c1,B,2024-03-09,1,3.00\n")
    with pytest.raises(
        ImportValidationError, match=r":3: Order: .*dated 2024-01-02 on line 2 but 2024-03-09"
    ):
        import_generic(store, path, parse_mapping(MAP))


def test_option_combinations_are_checked_before_reading(tmp_path: Path) -> None:
    mapping = parse_mapping(MAP)
    with pytest.raises(ConfigError, match="drop order= from --map, or drop --basket-by"):
        GenericOptions(mapping, basket_by="customer,date").check()
    no_order = {k: v for k, v in mapping.items() if k != "order"}
    with pytest.raises(ConfigError, match="--basket-by customer,date"):
        GenericOptions(no_order).check()
    with pytest.raises(ConfigError, match="--no-header: --map takes column numbers"):
        GenericOptions(mapping, header=False).check()
    with pytest.raises(ConfigError, match="--price-is must be one of"):
        GenericOptions(mapping, price_is="gross").check()


# -- prices, numbers, duplicates ------------------------------------------------------------------------


def test_line_totals_become_unit_prices(store: object, tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "c1,1,A,2024-01-02,4,10.00\n")
    opts = GenericOptions(parse_mapping(MAP), price_is="line-total")
    summary = import_generic(store, path, opts)
    assert "'Price' read as each line's total and divided by the quantity" in summary.notes
    assert store.get_product("A").price == 2.5  # type: ignore[attr-defined]
    assert store.catalog_counts().revenue == pytest.approx(10.0)  # type: ignore[attr-defined]


def test_identical_lines_add_up_with_aggregate_duplicates(store: object, tmp_path: Path) -> None:
    path = write(
        tmp_path, HEADER + "c1,1,A,2024-01-02,1,2.00\nc1,1,A,2024-01-02,2,2.00\nc1,1,A,2024-01-02,1,1.50\n"
    )
    summary = import_generic(store, path, GenericOptions(parse_mapping(MAP), aggregate_duplicates=True))
    assert (
        "'Price' read as the unit price; pass --price-is line-total if it is each line's total"
        in summary.notes
    )
    assert summary.order_lines_added == 2  # the 1.50 line is another price: its own line
    [order] = store.orders_by_ids([1]).values()  # type: ignore[attr-defined]
    assert [(line.quantity, line.unit_price) for line in order.lines] == [(3, 2.0), (1, 1.5)]
    assert order.total == 7.5


def test_decimal_commas_and_thousands_are_detected(store: object, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Customer;Order;Sku;Date;Qty;Price\nc1;1;A;2024-01-02;1;1.234,50\nc1;1;B;2024-01-02;1;4,95\n",
    )
    summary = import_generic(store, path, GenericOptions(parse_mapping(MAP), delimiter=";"))
    assert store.get_product("A").price == 1234.5  # type: ignore[attr-defined]
    assert store.get_product("B").price == 4.95  # type: ignore[attr-defined]
    assert any("decimal separator ','" in n and "line 2" in n for n in summary.notes)


def test_an_ambiguous_number_is_refused_naming_decimal(store: object, tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + 'c1,1,A,2024-01-02,1,"1,234"\n')
    with pytest.raises(ImportValidationError, match=r"Price: '1,234' is ambiguous.*--decimal"):
        import_generic(store, path, parse_mapping(MAP))
    import_generic(store, path, GenericOptions(parse_mapping(MAP), decimal="."))
    assert store.get_product("A").price == 1234.0  # type: ignore[attr-defined]


def test_number_format_rules() -> None:
    auto = NumberFormat()
    with pytest.raises(RowError, match="ambiguous"):
        auto.parse("2.500", "p", 1)
    assert auto.parse("£1,234.50", "p", 2) == 1234.5 and auto.decimal == "."
    assert auto.parse("2.500", "p", 3) == 2.5  # settled by line 2
    assert auto.parse("1,234", "p", 4) == 1234.0
    with pytest.raises(RowError, match=r"'4,5' is written with a decimal comma but line 2"):
        auto.parse("4,5", "p", 5)
    comma = NumberFormat(",")
    assert comma.parse("1 234,50 €", "p", 1) == 1234.5
    assert comma.parse("1.234.567", "p", 1) == 1234567.0
    assert comma.parse("-0,5", "p", 1) == -0.5
    assert NumberFormat().parse("1'234.50", "p", 1) == 1234.5
    for bad in ("12..5", "1,2,3", "abc", "1.2.3,4,5"):
        with pytest.raises(RowError, match="is not a number"):
            NumberFormat().parse(bad, "p", 1)


def test_bad_dates_suggest_a_date_format(store: object, tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "c1,1,A,21-07-2015,1,2.00\n")
    with pytest.raises(ImportValidationError, match=r"Date: is not a date .*pass --date-format '%d-%m-%Y'"):
        import_generic(store, path, parse_mapping(MAP))


def test_a_renamed_column_names_the_map_entry(store: object, tmp_path: Path) -> None:
    path = write(tmp_path, "Customer,Order,SKU,Date,Qty,Price\nc1,1,A,2024-01-02,1,2.00\n")
    with pytest.raises(ImportValidationError, match=r"missing column\(s\) 'Sku'.*--map sku=Sku"):
        import_generic(store, path, parse_mapping(MAP))


# -- people and products -------------------------------------------------------------------------------


def test_customers_by_email_idn_and_case(store: object, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Email,Order,Sku,Date,Price\n"
        "ben@example.com,1,A,2024-01-02,2.00\n"
        "BEN@Example.com,2,A,2024-02-02,2.00\n"
        "ivy@bücher.example,3,A,2024-02-03,2.00\n",
    )
    import_generic(store, path, parse_mapping("email=Email,order=Order,sku=Sku,date=Date,price=Price"))
    assert store.catalog_counts().customers_total == 2  # type: ignore[attr-defined]
    ben = store.get_customer("ben@example.com")  # type: ignore[attr-defined]
    # one customer; the address as last written is kept for display (domain lower-cased)
    assert ben.external_id == "ben@example.com" and ben.email == "BEN@example.com"
    ivy = store.get_customer("ivy@bücher.example")  # type: ignore[attr-defined]
    assert ivy is not None and ivy.email == "ivy@bücher.example"


def test_categories_are_only_invented_when_asked(store: object, tmp_path: Path) -> None:
    path = write(tmp_path, "c,o,d,n\nc1,1,2024-01-02,Sencha Green Tea\nc1,1,2024-01-02,Hair Spray\n")
    mapping = parse_mapping("customer=c,order=o,date=d,product_name=n")
    import_generic(store, path, mapping)
    assert {p.category for p in store.all_products()} == {None}  # type: ignore[attr-defined]
    import_generic(store, path, GenericOptions(mapping, categorise="keywords"))
    # a re-import of the same orders changes nothing, but the products' categories are filled now
    assert {p.category for p in store.all_products()} != {None}  # type: ignore[attr-defined]


def test_product_keys_from_names_are_stable_and_never_an_sku() -> None:
    assert product_key_from_name("Gift Wrap - Red") == "gift-wrap-red"
    assert product_key_from_name("  gift wrap  red ") == "gift-wrap-red"
    assert product_key_from_name("Crème Brûlée") == "crème-brûlée"
    long = product_key_from_name("x" * 300)
    assert len(long) <= 100 and long == product_key_from_name("x" * 300)
    assert product_key_from_name("!!!").startswith("name-")


def test_gzip_without_header_is_read(store: object, tmp_path: Path) -> None:
    path = tmp_path / "b.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("7,01-02-2015,whole milk\n7,01-02-2015,yogurt\n")
    import_generic(store, path, GenericOptions(dict(GROCERY_MAP), header=False, date_format="%d-%m-%Y",
                                               basket_by="customer,date"))  # fmt: skip
    assert counts(store) == (1, 2, 1, 2)
