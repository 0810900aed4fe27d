"""Data commands: ``retain db upgrade``, ``retain import ...``, ``retain stats``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from campaigns.analytics import PERIODS, KpiReport, kpi_report
from campaigns.cli.app import app, err, open_store, out, print_json, settings, show_progress, state
from campaigns.errors import ConfigError
from campaigns.store.engine import create_db_engine, current_revision, safe_url, upgrade
from campaigns.store.records import ImportSummary

db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")
import_app = typer.Typer(
    help="Import purchase history (all or nothing; re-importing changes nothing).", no_args_is_help=True
)
app.add_typer(import_app, name="import")


def _adopt_currency(ctx: typer.Context, store: object, path: Path) -> None:
    """A shop made by `retain init` takes its currency from its first order import (written to retain.toml)."""
    from campaigns.config import config_path
    from campaigns.shop_init import adopt_currency

    totals = store.currency_totals()  # type: ignore[attr-defined]
    config = config_path(state(ctx).config)
    if totals and adopt_currency(config, totals[0].currency, str(path)):
        out.print(
            f"  currency {totals[0].currency} written to {escape(str(config))} (from this first import)"
        )


def _currency_pending(ctx: typer.Context) -> bool:
    from campaigns.config import config_path
    from campaigns.shop_init import currency_pending

    return currency_pending(config_path(state(ctx).config))


@import_app.callback()
def _import_bounds(ctx: typer.Context) -> None:
    """Every import accepts dates from import_earliest_date to import_max_days_ahead days from now."""
    from campaigns.ingest.base import date_range

    s = settings(ctx)
    ctx.with_resource(date_range(s.import_earliest_date, s.import_max_days_ahead))


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply the Alembic migrations to the database (safe to run again)."""
    url = settings(ctx).resolved_database_url()
    engine = create_db_engine(url)
    upgrade(engine)
    out.print(f"{safe_url(url)} is at revision {current_revision(engine)}")
    engine.dispose()


@contextmanager
def _progress(enabled: bool, label: str, total: int | None) -> Iterator[Callable[[int], None] | None]:
    if not enabled:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} lines"), TimeElapsedColumn(),
        console=err, transient=True,
    ) as bar:  # fmt: skip
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _print_summary(summary: ImportSummary, as_json: bool, *, catalog: bool = False) -> None:
    if as_json:
        print_json(asdict(summary))
        return
    out.print(
        f"Imported {escape(summary.path)} ({summary.source}) in {summary.seconds:.1f} s: {summary.rows_read:,} rows read"
    )
    table = Table(show_header=False, box=None, pad_edge=False)
    rows = (
        [("products added", summary.products_added), ("products updated", summary.products_updated)]
        if catalog
        else [
            ("customers added", summary.customers_added),
            ("products added", summary.products_added),
            ("orders added", summary.orders_added),
            ("order lines added", summary.order_lines_added),
            ("returns added", summary.returns_added),
        ]
    )
    for label, value in rows:
        table.add_row(f"  {label}", f"{value:,}")
    out.print(table)
    if summary.set_aside:
        out.print("  set aside by the cleaning rules (the data's known shape, not errors):")
        for rule, n in sorted(summary.set_aside.items(), key=lambda kv: -kv[1]):
            out.print(f"    {escape(rule):<32} {n:,}")
    for kind, n in sorted(summary.events.items()):
        out.print(f"  {kind.replace('_', ' ')}: {n:,} (recorded as a product event)")
    for note in summary.notes:
        out.print(f"  note: {escape(note)}")
    if summary.rejected:
        out.print(
            f"  [yellow]{summary.rejected:,} invalid rows skipped[/yellow]; see {escape(str(summary.rejects_path))}"
        )


SkipInvalid = Annotated[
    bool,
    typer.Option("--skip-invalid", help="Import the valid rows; write rejected ones with reasons to a CSV."),
]
Rejects = Annotated[
    Path | None,
    typer.Option("--rejects", help="Where --skip-invalid writes rejected rows (default: PATH.rejects.csv)."),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of the report.")]
Delimiter = Annotated[str, typer.Option("--delimiter", help="generic/woocommerce: field separator.")]
Decimal = Annotated[
    str | None, typer.Option("--decimal", help="generic: decimal separator . or , (default: detected).")
]
Currency = Annotated[
    str | None, typer.Option("--currency", help="Currency of files that name none (default: settings).")
]


@import_app.command("online-retail")
def import_online_retail_cmd(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The UCI Online Retail CSV (.csv or .csv.gz).")],
    skip_invalid: SkipInvalid = False,
    rejects: Rejects = None,
    as_json: JsonOut = False,
) -> None:
    """Import the UCI Online Retail file (e.g. data/online_retail.csv.gz) with its cleaning rules."""
    from campaigns.ingest import import_online_retail

    store = open_store(ctx)
    with _progress(show_progress(as_json), "importing", 541_909) as progress:
        summary = import_online_retail(
            store, path, skip_invalid=skip_invalid, rejects_path=rejects, progress=progress
        )
    _print_summary(summary, as_json)
    _adopt_currency(ctx, store, path)


class OrderFormat(StrEnum):
    shopify = "shopify"
    generic = "generic"


@import_app.command("orders")
def import_orders_cmd(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The orders CSV (one row per line item; .csv or .csv.gz).")],
    format: Annotated[
        OrderFormat, typer.Option("--format", help="shopify (orders export) or generic (needs --map).")
    ],
    map: Annotated[
        str | None,
        typer.Option(
            "--map",
            help="generic: field=column pairs, e.g. customer=Cust,order=No,sku=Sku,date=Date,qty=Qty,price=Price "
            "(fields: customer, email, order, sku, product_name, date, qty, price, currency, category, "
            "first_name, last_name, name, country, region, consent; with --no-header: column numbers).",
        ),
    ] = None,
    delimiter: Delimiter = ",",
    date_format: Annotated[
        str | None,
        typer.Option(
            "--date-format", help="generic: strptime format, e.g. %d/%m/%Y %H:%M (default ISO 8601)."
        ),
    ] = None,
    no_header: Annotated[
        bool,
        typer.Option("--no-header", help="generic: the file has no header line; --map takes column numbers."),
    ] = False,
    basket_by: Annotated[
        str | None,
        typer.Option(
            "--basket-by",
            help="generic, no order column: build orders as customer,date (one per customer per day) or "
            "customer,datetime.",
        ),
    ] = None,
    aggregate_duplicates: Annotated[
        bool,
        typer.Option(
            "--aggregate-duplicates",
            help="generic: add identical lines (same order, product, price) into quantity.",
        ),
    ] = False,
    price_is: Annotated[
        str, typer.Option("--price-is", help="generic: the price column is the unit price or the line-total.")
    ] = "unit",
    decimal: Decimal = None,
    categorise: Annotated[
        str | None,
        typer.Option(
            "--categorise", help="keywords: give products without a category a demo keyword category."
        ),
    ] = None,
    currency: Currency = None,
    skip_invalid: SkipInvalid = False,
    rejects: Rejects = None,
    as_json: JsonOut = False,
) -> None:
    """Import an orders export: Shopify's, or any CSV with a column mapping (baskets built when it has no order id)."""
    from campaigns.ingest import GenericOptions, import_generic, import_shopify, parse_mapping

    cur = (currency or settings(ctx).currency).upper()
    generic_only = {
        "--no-header": no_header, "--basket-by": basket_by, "--aggregate-duplicates": aggregate_duplicates,
        "--price-is": price_is != "unit", "--decimal": decimal, "--date-format": date_format,
        "--delimiter": delimiter != ",",
    }  # fmt: skip
    if format is OrderFormat.generic:
        if not map:
            raise ConfigError(
                "--format generic needs --map customer=...,order=...,sku=...,date=...,qty=...,price=... "
                "(or --basket-by customer,date instead of order=)"
            )
        opts = GenericOptions(
            parse_mapping(map), delimiter=delimiter, date_format=date_format, currency=cur, header=not no_header,
            basket_by=basket_by, aggregate_duplicates=aggregate_duplicates, price_is=price_is, decimal=decimal,
            categorise=categorise,
        )  # fmt: skip
        opts.check()
        if not currency and "currency" not in parse_mapping(map) and _currency_pending(ctx):
            raise ConfigError(
                "this shop has no currency yet (retain init leaves it to the first import) and the file names "
                "none: pass --currency, e.g. --currency EUR (it is then written to retain.toml)"
            )
        store = open_store(ctx)
        with _progress(show_progress(as_json), "importing", None) as progress:
            summary = import_generic(
                store, path, opts, skip_invalid=skip_invalid, rejects_path=rejects, progress=progress
            )
    else:
        used = [name for name, value in generic_only.items() if value] + (["--map"] if map else [])
        if used:
            raise ConfigError(
                f"{', '.join(used)}: only for --format generic (Shopify's export has a fixed shape)"
            )
        store = open_store(ctx)
        summary = import_shopify(
            store, path, currency=cur, skip_invalid=skip_invalid, rejects_path=rejects,
            categorise=categorise == "keywords",
        )  # fmt: skip
    _print_summary(summary, as_json)
    _adopt_currency(ctx, store, path)


class CatalogFormat(StrEnum):
    shopify = "shopify"
    woocommerce = "woocommerce"
    generic = "generic"


@import_app.command("catalog")
def import_catalog_cmd(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The products CSV.")],
    format: Annotated[
        CatalogFormat,
        typer.Option(
            "--format", help="shopify (products export), woocommerce (product CSV) or generic (--map)."
        ),
    ],
    map: Annotated[
        str | None,
        typer.Option(
            "--map",
            help="generic: field=column pairs, e.g. sku=Code,name=Title,price=Price,image_url=Picture "
            "(fields: sku, name, price, compare_at_price, url, handle, id, image_url, image_alt, category, vendor, "
            "tags, status, published, in_stock, inventory_qty, currency).",
        ),
    ] = None,
    url_template: Annotated[
        str | None,
        typer.Option(
            "--url-template",
            help="Product page URL with {shop_url}, {handle}, {sku}, {id} (default: setting product_url_template, "
            "else the format's).",
        ),
    ] = None,
    delimiter: Delimiter = ",",
    decimal: Decimal = None,
    currency: Currency = None,
    skip_invalid: SkipInvalid = False,
    rejects: Rejects = None,
    as_json: JsonOut = False,
) -> None:
    """Import a product catalogue: images, links, categories, sale prices, status and stock.

    Re-importing records back-in-stock and price-drop events."""
    from campaigns.ingest.catalog import CatalogOptions, import_catalog, parse_catalog_mapping

    s = settings(ctx)
    opts = CatalogOptions(
        shop_url=s.shop_url,
        currency=(currency or s.currency).upper(),
        url_template=url_template if url_template is not None else s.product_url_template,
        delimiter=delimiter,
        decimal=decimal,
        mapping=parse_catalog_mapping(map) if map else None,
    )
    opts.check_template()
    store = open_store(ctx)
    summary = import_catalog(store, path, format.value, opts, skip_invalid=skip_invalid, rejects_path=rejects)
    _print_summary(summary, as_json, catalog=True)


class CustomerFormat(StrEnum):
    shopify = "shopify"


@import_app.command("customers")
def import_customers_cmd(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="The customers export CSV.")],
    format: Annotated[
        CustomerFormat, typer.Option("--format", help="shopify (Admin > Customers > Export).")
    ] = CustomerFormat.shopify,
    skip_invalid: SkipInvalid = False,
    rejects: Rejects = None,
    as_json: JsonOut = False,
) -> None:
    """Import a customers export: names, email consent (dated), tags, timezone from the default address."""
    from campaigns.ingest.shopify_customers import import_shopify_customers

    store = open_store(ctx)
    summary = import_shopify_customers(store, path, skip_invalid=skip_invalid, rejects_path=rejects)
    _print_summary(summary, as_json)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{x * 100:.1f}%"


def print_kpis(report: KpiReport, currency: str) -> None:
    """The human KPI report (also used by the demo); ``currency`` is the fallback when there are no orders.

    Amounts are in the shop's currency as the data says (the currency of most orders); a database whose
    orders use several currencies also gets one line per currency.
    """
    from campaigns.money import format_money

    shown = report.currency or currency
    head = Table(title="Retention KPIs", show_header=False, title_justify="left")
    head.add_row("customers (with ≥1 order)", f"{report.customers:,}")
    head.add_row("products (bought)", f"{report.products:,}")
    head.add_row("orders", f"{report.orders:,}")
    head.add_row("order lines", f"{report.order_lines:,}")
    head.add_row("returned lines (kept apart)", f"{report.returns:,}")
    several = len(report.currencies) > 1
    suffix = f" ({shown} orders)" if several else ""
    head.add_row(f"revenue{suffix}", format_money(report.revenue, shown))
    head.add_row("repeat purchase rate", _pct(report.repeat_purchase_rate))
    aov = report.average_order_value
    head.add_row(f"average order value{suffix}", format_money(aov, shown) or "—")
    if report.orders_without_prices:
        head.add_row("orders without prices (no revenue)", f"{report.orders_without_prices:,}")
    head.add_row(f"retention rate ({report.retention_period or 'n/a'})", _pct(report.retention_rate))
    if report.first_order_at:
        head.add_row("orders from", f"{report.first_order_at:%Y-%m-%d} to {report.last_order_at:%Y-%m-%d}")
    out.print(head)
    if several:
        t = Table(title="Per currency (never summed across currencies)", title_justify="left")
        for col in ("currency", "orders", "revenue", "average order value"):
            t.add_column(col, justify="right")
        for kpi in report.currencies:
            t.add_row(kpi.currency, f"{kpi.orders:,}", format_money(kpi.revenue, kpi.currency),
                      format_money(kpi.average_order_value, kpi.currency) or "—")  # fmt: skip
        out.print(t)
    if report.retention:
        t = Table(title=f"{report.period.capitalize()}ly retention", title_justify="left")
        for col in ("period", "active before", "ordered again", "rate"):
            t.add_column(col, justify="right")
        for p in report.retention:
            t.add_row(p.period, f"{p.previous_active:,}", f"{p.retained:,}", _pct(p.rate))
        out.print(t)
    if report.cohorts:
        width = max(len(c.retention) for c in report.cohorts)
        t = Table(
            title="Cohort retention (share of each first-order month ordering k months later)",
            title_justify="left",
        )
        t.add_column("cohort")
        t.add_column("size", justify="right")
        for k in range(1, width):
            t.add_column(f"+{k}", justify="right")
        for c in report.cohorts:
            t.add_row(c.cohort, f"{c.size:,}", *[f"{v * 100:.0f}%" for v in c.retention[1:]])
        out.print(t)


@app.command("stats")
def stats_cmd(
    ctx: typer.Context,
    period: Annotated[str, typer.Option("--period", help="Retention period: month or quarter.")] = "month",
    as_json: JsonOut = False,
) -> None:
    """Print retention KPIs: customers, orders, repeat purchase rate, AOV, retention, cohorts."""
    if period not in PERIODS:
        raise ConfigError(f"--period must be one of {', '.join(PERIODS)}, got {period!r}")
    store = open_store(ctx)
    report = kpi_report(store, period=period)
    if as_json:
        print_json(report.to_json())
    else:
        print_kpis(report, settings(ctx).currency)
