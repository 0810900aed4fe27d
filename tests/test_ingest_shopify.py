"""Shopify's orders and customers exports as Shopify writes them (tests/fixtures/shopify_*_export.csv),
on SQLite and PostgreSQL: order-level columns on the first line only, lines without SKU, mixed-case
addresses, refunds, per-order currency, consent with its date, tags and timezones."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

import pytest

from campaigns.errors import ImportValidationError
from campaigns.ingest import import_shopify
from campaigns.ingest.shopify_customers import import_shopify_customers, split_tags
from campaigns.segments import count_segment
from campaigns.segments.definitions import resolve_segment

from .csv_files import read_rows, write_rows

FIXTURES = Path(__file__).parent / "fixtures"
ORDERS = FIXTURES / "shopify_orders_export.csv"
CUSTOMERS = FIXTURES / "shopify_customers_export.csv"


def write_changed(tmp_path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    return write_rows(tmp_path / "orders_export.csv", header, rows)


def test_the_fixture_has_shopifys_quirks() -> None:
    header, rows = read_rows(ORDERS)
    assert len(header) == 79 and header[:3] == ["Name", "Email", "Financial Status"]
    later = [r for r in rows if not r["Financial Status"]]
    assert later and all(not r["Currency"] and not r["Accepts Marketing"] for r in later)
    assert any(not r["Email"] for r in later)  # the "Email: is empty" lines
    assert any(not r["Lineitem sku"] for r in rows)
    assert {r["Currency"] for r in rows if r["Currency"]} == {"EUR", "GBP", "USD"}


def test_orders_export_lines_inherit_their_orders_fields(store: object) -> None:
    summary = import_shopify(store, ORDERS, currency="EUR")
    assert summary.rejected == 0
    assert summary.set_aside == {
        "non_product_line": 2,  # the gift card in #1002 and the tip in #1003
        "refunded_kept_as_return": 1,  # #1004
        "order_voided": 1,
        "order_cancelled": 1,
        "order_pending": 1,
        "order_without_email": 1,  # #1008, a point-of-sale sale
        "identical_line_items_added_up": 1,  # #1012's two identical lines
    }
    counts = store.catalog_counts()  # type: ignore[attr-defined]
    assert (counts.orders, counts.order_lines, counts.returns) == (7, 11, 1)
    ada = store.get_customer("ada@example.com")  # type: ignore[attr-defined]
    orders = {o.external_id: o for o in store.orders_for_customers([ada.id])[ada.id]}  # type: ignore[attr-defined]
    first = orders["shopify:#1001"]
    # the second line of #1001 has no Email/Currency/Created at: it belongs to the order all the same
    assert [(line.product.sku, line.quantity, line.unit_price) for line in first.lines] == [
        ("APR-SAGE", 2, 15.0),
        ("MUG-ENAMEL", 1, 12.0),
    ]
    assert first.total == pytest.approx(42.0) and first.currency == "EUR"
    assert (first.discount_codes, first.discount_amount, first.lines[0].discount) == ("SPRING10", 4.2, 3.0)
    partial = orders["shopify:#1003"]
    assert partial.financial_status == "partially_refunded" and partial.refunded_amount == 12.0
    assert len(partial.lines) == 2  # the tip is not a product


def test_orders_export_customers_currency_and_custom_items(store: object) -> None:
    import_shopify(store, ORDERS, currency="EUR")
    # BEN@example.com and ben@example.com are one customer; the address as last written is kept
    ben = store.get_customer("ben@example.com")  # type: ignore[attr-defined]
    assert ben.external_id == "ben@example.com" and ben.email == "BEN@example.com"
    assert len(store.orders_for_customers([ben.id])[ben.id]) == 2  # type: ignore[attr-defined]
    # consent: the later order (#1012, "no") wins over #1011's "yes"
    assert not ben.marketing_consent
    mia = store.get_customer("mia@example.com")  # type: ignore[attr-defined]
    assert (mia.country, mia.region, mia.timezone) == ("US", "CA", "America/Los_Angeles")
    [usd] = store.orders_for_customers([mia.id])[mia.id]  # type: ignore[attr-defined]
    assert usd.currency == "USD" and usd.ordered_at == datetime(2024, 6, 2, 3, 0)  # -0700 stored as UTC
    grace = store.get_customer("grace.hopper@example.org")  # type: ignore[attr-defined]
    gbp = [o for o in store.orders_for_customers([grace.id])[grace.id] if o.currency == "GBP"]  # type: ignore[attr-defined]
    assert [line.product.sku for line in gbp[0].lines] == ["APR-SAGE", "custom-engraving", "BWL-STONE"]
    assert store.get_customer("alan@example.com") is None  # type: ignore[attr-defined]  # voided only
    # no category is invented from product names
    assert {p.category for p in store.all_products()} == {None}  # type: ignore[attr-defined]
    again = import_shopify(store, ORDERS, currency="EUR")
    assert again.orders_added == 0 and again.order_lines_added == 0 and again.customers_added == 0


def test_mixed_currencies_give_kpis_per_currency(store: object) -> None:
    from campaigns.analytics import kpi_report

    import_shopify(store, ORDERS, currency="EUR")
    report = kpi_report(store)
    assert report.currency == "EUR"
    assert [(c.currency, c.orders) for c in report.currencies] == [("EUR", 5), ("GBP", 1), ("USD", 1)]
    eur = report.currencies[0]
    assert report.revenue == eur.revenue == pytest.approx(42 + 10 + 27 + 12 + 48)
    assert report.average_order_value == pytest.approx(eur.revenue / 5)


HOSTILE = {
    "a second first line contradicts": (
        lambda rows: rows[1].update(Email="someone.else@example.com"),
        r":3: Email: 'someone.else@example.com' contradicts 'Ada@Example.com' on the order's first line 2",
    ),
    "order repeated after others": (
        lambda rows: rows.append(dict(rows[0])),
        r"order #1001 appears again after other orders \(its rows start on line 2\)",
    ),
    "unknown status": (
        lambda rows: rows[0].update({"Financial Status": "on_hold"}),
        r"Financial Status: unknown status 'on_hold'",
    ),
    "first line without status": (
        lambda rows: rows[0].update({"Financial Status": ""}),
        r":2: Financial Status: is empty on the order's first row",
    ),
    "bad date": (
        lambda rows: rows[0].update({"Created at": "01/03/2024"}),
        r"Created at: is not a Shopify date",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE), ids=list(HOSTILE))
def test_hostile_orders_exports_write_nothing(store: object, tmp_path: Path, case: str) -> None:
    header, rows = read_rows(ORDERS)
    change, pattern = HOSTILE[case]
    change(rows)
    with pytest.raises(ImportValidationError, match=pattern):
        import_shopify(store, write_changed(tmp_path, header, rows), currency="EUR")
    assert store.catalog_counts().customers_total == 0  # type: ignore[attr-defined]


def test_lines_of_a_refused_first_line_are_refused_too(sqlite_store: object, tmp_path: Path) -> None:
    header, rows = read_rows(ORDERS)
    rows[0]["Created at"] = "yesterday"
    rejects = tmp_path / "rejects.csv"
    summary = import_shopify(
        sqlite_store,
        write_changed(tmp_path, header, rows),
        currency="EUR",
        skip_invalid=True,
        rejects_path=rejects,
    )
    assert summary.rejected == 2  # both lines of #1001
    assert "its first line 2 was refused" in rejects.read_text()


# -- the customers export ---------------------------------------------------------------------------------


def exported_on(tmp_path: Path, when: datetime) -> Path:
    """A copy of the customers export whose file time (its consent date) is ``when``."""
    path = tmp_path / "customers_export.csv"
    shutil.copyfile(CUSTOMERS, path)
    os.utime(path, (when.timestamp(),) * 2)
    return path


def test_customers_export_consent_tags_and_timezones(store: object, tmp_path: Path) -> None:
    summary = import_shopify_customers(store, exported_on(tmp_path, datetime(2024, 9, 1)))
    assert summary.set_aside == {"no_email": 1, "same_address_again_later_row_wins": 1}
    assert summary.customers_added == 6
    ada = store.get_customer("ada@example.com")  # type: ignore[attr-defined]
    assert ada.email == "Ada@example.com" and not ada.marketing_consent
    assert ada.consent_source == "shopify:customers-export"
    kai = store.get_customer("kai@example.jp")  # type: ignore[attr-defined]
    assert kai.timezone == "Asia/Tokyo"
    liam = store.get_customer("liam@example.ca")  # type: ignore[attr-defined]
    assert (liam.region, liam.timezone) == ("QC", "America/Toronto")
    assert store.get_customer("ivy@bücher.example").timezone == "Europe/Berlin"  # type: ignore[attr-defined]
    tags = store.customer_tags([ada.id, liam.id])  # type: ignore[attr-defined]
    assert tags == {ada.id: ["newsletter", "vip"], liam.id: ["newsletter", "vip"]}


def test_a_newer_customers_export_overrides_older_order_consent_and_not_the_reverse(
    store: object, tmp_path: Path
) -> None:
    import_shopify(store, ORDERS, currency="EUR")
    ada = store.get_customer("ada@example.com")  # type: ignore[attr-defined]
    assert ada.marketing_consent and ada.consent_source == "shopify:accepts-marketing"
    import_shopify_customers(store, exported_on(tmp_path, datetime(2024, 9, 1)))  # she unsubscribed since
    assert not store.get_customer("ada@example.com").marketing_consent  # type: ignore[attr-defined]
    import_shopify(store, ORDERS, currency="EUR")  # her orders' "yes" is older: it does not come back
    assert not store.get_customer("ada@example.com").marketing_consent  # type: ignore[attr-defined]
    # tags select a segment among buyers
    seg = resolve_segment({"tags": ["VIP"]}, {})
    assert count_segment(store, seg, now=datetime(2024, 9, 2)) == 1


def test_split_tags() -> None:
    assert split_tags(" vip, Wholesale,VIP ,, 'b2b") == ["vip", "Wholesale", "b2b"]
    assert split_tags("") == []
