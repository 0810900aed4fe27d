"""Lifecycle commands: ``retain predict``, ``retain customer ID`` and ``retain evaluate lifecycle``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from campaigns.cli.app import app, open_store, out, print_json, settings
from campaigns.cli.recs import evaluate_app
from campaigns.errors import ConfigError, NotFoundError
from campaigns.lifecycle.words import prediction_lines
from campaigns.money import format_money
from recommender.clv import CLVFitError


def _as_of(store: Any, ctx: typer.Context, value: str | None) -> datetime:
    from campaigns.clock import reference_now

    if value is None:
        return reference_now(settings(ctx), store)
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"option --as-of: {value!r} is not an ISO date such as 2011-12-10") from None


def predict_and_report(
    store: Any, ctx: typer.Context, as_of: datetime, *, as_json: bool = False, intervals: bool = True
) -> None:
    """Fit, store and summarize the predictions."""
    from campaigns.lifecycle import refresh_predictions

    result = refresh_predictions(store, settings(ctx), as_of, **({} if intervals else {"bootstrap": 0}))
    if as_json:
        print_json({"as_of": as_of.isoformat(), **result.details})
        return
    d = result.details
    out.print(
        f"lifecycle predictions for {d['customers']:,} customers as of {as_of:%Y-%m-%d} "
        f"({d['model']}, {d['seconds']} s)",
        markup=False,
    )
    out.print(d["uncertainty"], markup=False)
    if result.gamma_gamma is None:
        out.print("spend: no prices (or too few repeat customers with prices): no CLV", markup=False)


@app.command("predict")
def predict_cmd(
    ctx: typer.Context,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", metavar="DATE", help="Predict as of this date (default: the configured as_of)."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the fit as JSON.")] = False,
    intervals: Annotated[
        bool,
        typer.Option(
            "--intervals/--no-intervals", help="80% intervals from refits (most of the time on big shops)."
        ),
    ] = True,
) -> None:
    """Predict per customer: chance still active, expected orders in 30/90 days, next order date, 12-month
    CLV, best send hour (docs/predictions.md). `retain train` runs this too."""
    store = open_store(ctx)
    predict_and_report(store, ctx, _as_of(store, ctx, as_of), as_json=as_json, intervals=intervals)


@app.command("customer")
def customer_cmd(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(metavar="ID", help="Database id, the shop's customer id, or email.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """One customer: who they are, their orders, and their lifecycle predictions."""
    store = open_store(ctx)
    customer = store.get_customer(ref)
    if customer is None:
        raise NotFoundError(
            f"no customer {ref!r} (give the database id, the shop's customer id or the email)"
        )
    orders = store.order_columns(until=None)
    mine = orders.ordered_at[orders.customer_id == customer.id]
    spent = orders.total[orders.customer_id == customer.id]
    prediction = store.predictions_for([customer.id]).get(customer.id)
    currency = settings(ctx).currency
    data: dict[str, Any] = {
        "id": customer.id,
        "external_id": customer.external_id,
        "email": customer.email,
        "country": customer.country,
        "orders": int(len(mine)),
        "first_order": str(mine.min()) if len(mine) else None,
        "last_order": str(mine.max()) if len(mine) else None,
        "spend": round(float(np.nansum(spent)), 2) if np.isfinite(spent).any() else None,
        "predictions": None if prediction is None else _prediction_json(prediction),
    }
    if as_json:
        print_json(data)
        return
    out.print(f"customer {customer.external_id} (id {customer.id}) {customer.email or ''}", markup=False)
    out.print(
        f"{data['orders']} orders, first {data['first_order'] or '-'}, last {data['last_order'] or '-'}, "
        f"spend {format_money(data['spend'], currency) or 'unknown'}",
        markup=False,
    )
    if prediction is None:
        out.print("no predictions yet: run `retain predict` (or `retain train`)", markup=False)
        return
    table = Table("prediction", "value", title=f"predictions as of {prediction.as_of:%Y-%m-%d}")
    for label, value in prediction_lines(prediction, currency):
        table.add_row(label, value)
    out.print(table)


def _prediction_json(p: Any) -> dict[str, Any]:
    return {
        k: (v.isoformat() if isinstance(v, datetime) else v)
        for k, v in (
            ("as_of", p.as_of),
            ("p_alive", p.p_alive),
            ("expected_orders_30d", p.expected_orders_30d),
            ("expected_orders_90d", p.expected_orders_90d),
            ("expected_orders_90d_interval", [p.expected_orders_90d_low, p.expected_orders_90d_high]),
            ("next_order_at", p.next_order_at),
            ("spend_per_order", p.spend_per_order),
            ("clv_12m", p.clv_12m),
            ("clv_12m_interval", [p.clv_12m_low, p.clv_12m_high]),
            ("preferred_hour", p.preferred_hour),
            ("preferred_weekday", p.preferred_weekday),
        )
    }


def lifecycle_report(store: Any, ctx: typer.Context, cutoff: datetime | None, days: int) -> dict[str, Any]:
    """The whole evaluation: predictions, best send hour and replenishment, on one holdout."""
    from campaigns.lifecycle.evaluate import default_cutoff, evaluate_lifecycle
    from campaigns.lifecycle.replenish import evaluate_replenishment
    from campaigns.lifecycle.sendhour import evaluate_send_hour

    orders = store.order_columns()
    if len(orders) == 0:
        raise NotFoundError("no orders to evaluate on: import orders first (retain import ...)")
    cut = cutoff or default_cutoff(orders, days)
    latest = default_cutoff(orders, days)
    if cut > latest:
        raise ConfigError(
            f"option --cutoff: the {days}-day holdout after {cut:%Y-%m-%d} runs past the last order; "
            f"choose {latest:%Y-%m-%d} or earlier (or a shorter --days)"
        )
    try:
        report = evaluate_lifecycle(orders, cut, days=days)
    except CLVFitError as exc:
        raise NotFoundError(
            f"nothing to learn before {cut:%Y-%m-%d}: {exc} (choose a later --cutoff)"
        ) from None
    train = store.order_columns(until=cut)
    test = store.order_columns(since=cut, until=_plus_days(cut, days))
    report["send_hour"] = evaluate_send_hour(train, test, store.customer_zones(), settings(ctx).shop_timezone)
    categories = {p.id: p.category for p in store.all_products()}
    report["replenishment"] = evaluate_replenishment(
        store.purchase_columns(until=_plus_days(cut, days)), categories, cut, days=days
    )
    return report


def _plus_days(at: datetime, days: int) -> datetime:
    from datetime import timedelta

    return at + timedelta(days=days)


@evaluate_app.command("lifecycle")
def evaluate_lifecycle_cmd(
    ctx: typer.Context,
    cutoff: Annotated[
        str | None,
        typer.Option(
            "--cutoff",
            metavar="DATE",
            help="Learn before this date, judge after (default: the last --days of data are the holdout).",
        ),
    ] = None,
    days: Annotated[int, typer.Option("--days", min=7, help="Length of the holdout window in days.")] = 90,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Temporal holdout of the lifecycle predictions: AUC of "orders in the next 90 days" for the model
    against RFM, recency and the drifting rule; predicted vs actual orders (MAE, calibration by decile);
    spend rank correlation; best send hour against the shop-wide most common hour."""
    store = open_store(ctx)
    cut = None
    if cutoff is not None:
        try:
            cut = datetime.fromisoformat(cutoff)
        except ValueError:
            raise ConfigError(f"option --cutoff: {cutoff!r} is not an ISO date such as 2011-09-09") from None
    report = lifecycle_report(store, ctx, cut, days)
    if as_json:
        print_json(report)
        return
    out.print(
        f"holdout {report['cutoff']} + {days} days: {report['customers']:,} customers, "
        f"{report['buyers_in_window']:,} ordered again",
        markup=False,
    )
    table = Table("score", "AUC: orders in the window", title="who orders again")
    for name, value in report["orders_90d_auc"].items():
        table.add_row(name, "-" if value is None else f"{value:.4f}")
    out.print(table)
    orders = report["orders"]
    out.print(
        f"orders per customer: MAE {orders['mae']:.3f}; predicted {orders['predicted_total']:,.0f} vs actual "
        f"{orders['actual_total']:,.0f}",
        markup=False,
    )
    deciles = Table("decile", "customers", "predicted", "actual", "error", title="calibration by decile")
    for d in orders["deciles"]:
        error = "-" if d["error"] is None else f"{d['error']:+.1%}"
        deciles.add_row(
            str(d["decile"]), str(d["customers"]), f"{d['predicted']:.1f}", f"{d['actual']:.0f}", error
        )
    out.print(deciles)
    if report["spend_spearman"] is not None:
        out.print(f"spend: Spearman {report['spend_spearman']:.3f} (predicted vs actual)", markup=False)
    hours = report["send_hour"]
    if hours.get("orders"):
        out.print(
            f"send hour: {hours['model']:.1%} of held-out orders within +-{hours['window_hours']} h of the "
            f"customer's predicted hour vs {hours['shop_mode']:.1%} for the shop's most common hour "
            f"({hours['shop_mode_hour']:02d}:00)",
            markup=False,
        )
    elif hours.get("note"):
        out.print(f"send hour: {hours['note']}", markup=False)
    refill = report["replenishment"]
    if refill.get("model"):
        table = Table("reminder", "reminders", f"bought within {refill['hit_days']} days", "precision",
                      title="replenishment reminders in the holdout")  # fmt: skip
        for name, row in refill.items():
            if isinstance(row, dict) and "reminders" in row:
                precision = "-" if row["precision"] is None else f"{row['precision']:.1%}"
                table.add_row(name, f"{row['reminders']:,}", f"{row['bought_within']:,}", precision)
        out.print(table)
    elif refill.get("note"):
        out.print(f"replenishment: {refill['note']}", markup=False)


__all__ = ["lifecycle_report", "predict_and_report"]
