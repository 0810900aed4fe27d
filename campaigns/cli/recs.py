"""Recommender commands: ``retain train``, ``retain evaluate``, ``retain tune``, ``retain model show``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from campaigns.cli.app import app, err, open_store, out, print_json, settings
from campaigns.errors import ConfigError

Cutoff = Annotated[
    str | None,
    typer.Option(
        "--cutoff", metavar="DATE", help="Train on purchases before this date (ISO, e.g. 2011-11-09)."
    ),
]
HoldoutDays = Annotated[int, typer.Option("--holdout-days", min=1, help="Length of the test window in days.")]
Params = Annotated[
    str | None,
    typer.Option(
        "--params",
        metavar="JSON",
        help='Model parameters as JSON, e.g. \'{"half_life_days": 60, "als": {"factors": 64}, "popular_weight": 0.2}\'.',
    ),
]
Budget = Annotated[
    float,
    typer.Option(
        "--budget", min=1.0, metavar="SECONDS", help="Time for model selection (or tuning), in seconds."
    ),
]
MODEL_NAMES = ("als", "blend", "itemknn")
model_app = typer.Typer(help="Inspect the trained model.", no_args_is_help=True)
app.add_typer(model_app, name="model")


def _date(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"option --cutoff: {value!r} is not an ISO date such as 2011-11-09") from None


def _params(value: str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"option --params: not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise ConfigError("option --params: must be a JSON object")
    return parsed


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help=f"Train this discover scorer ({', '.join(MODEL_NAMES)}) instead of selecting per shop.",
        ),
    ] = None,
    params: Params = None,
    cutoff: Cutoff = None,
    budget: Budget = 45.0,
    force: Annotated[
        bool, typer.Option("--force", help="Replace a model file that belongs to another database.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model's metadata as JSON.")] = False,
) -> None:
    """Fit the recommender on every purchase (before --cutoff) and save the model file.

    By default the model is selected for this shop: candidate models and blends are compared on rolling
    validation windows carved from the training data, within --budget seconds, per block (buy_again,
    discover), never shipping one that validates below the strongest baseline. --model or --params train
    that configuration instead. The lifecycle predictions (`retain predict`) are refreshed too.
    """
    from campaigns.training import train_model

    if model is not None and model not in MODEL_NAMES:
        raise ConfigError(f"option --model: {model!r} is not one of {', '.join(MODEL_NAMES)}")
    store = open_store(ctx)
    started = datetime.now()
    path = train_model(
        store,
        settings(ctx),
        model=model,
        params=_params(params),
        cutoff=_date(cutoff),
        budget=budget,
        force=force,
        progress=None if as_json else (lambda m: err.print(m, markup=False, highlight=False)),
    )
    seconds = (datetime.now() - started).total_seconds()
    meta = json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    lifecycle = _lifecycle_predictions(ctx, store, as_json)
    if as_json:
        print_json({**meta, "lifecycle": lifecycle})
        return
    _show_model(meta)
    out.print(f"trained in {seconds:.1f} s -> {path}", markup=False, highlight=False)


def _lifecycle_predictions(ctx: typer.Context, store: Any, quiet: bool) -> dict[str, Any]:
    """`retain train` also refreshes the lifecycle predictions (docs/predictions.md); a shop where they
    cannot be learned yet gets a note, not an error."""
    from campaigns.clock import reference_now
    from campaigns.errors import NotFoundError
    from campaigns.lifecycle import refresh_predictions

    try:
        result = refresh_predictions(store, settings(ctx), reference_now(settings(ctx), store))
    except NotFoundError as exc:
        if not quiet:
            err.print(f"lifecycle predictions: {exc}", markup=False, highlight=False)
        return {"error": str(exc)}
    if not quiet:
        err.print(
            f"lifecycle predictions for {result.details['customers']:,} customers "
            f"({result.details['seconds']} s): {result.details['uncertainty']}",
            markup=False,
            highlight=False,
        )
    return result.details


def _show_model(meta: dict[str, Any]) -> None:
    """What a model file says: data, choice per block with the reason, and the validation table."""
    out.print(
        f"model trained {meta.get('trained_at', '?')} on {meta.get('purchase_lines', '?')} purchase lines "
        f"({meta.get('customers', '?')} customers, {meta.get('products', '?')} products), "
        f"data up to {meta.get('as_of', '?')}, half-life {meta.get('half_life_days')} days",
        markup=False,
        highlight=False,
    )
    selection = meta.get("selection")
    if not selection:
        out.print(
            f"configuration given by hand (retain train --model/--params): {meta.get('model', '?')}",
            markup=False,
            highlight=False,
        )
        return
    for block, label in (("discover", "discover"), ("repeat", "buy_again / repeat")):
        choice = selection.get("choice", {}).get(block)
        if choice:
            out.print(f"{label}: {choice['reason']}", markup=False, highlight=False)
    windows = selection.get("windows", [])
    table = Table(
        title=f"validation: {len(windows)} window(s) of {windows[0]['days'] if windows else '?'} days from "
        + ", ".join(w["cutoff"][:10] for w in windows)
    )
    for col in ("block", "candidate", "mean nDCG@10", "per window", "baseline"):
        table.add_column(col, justify="right" if col.startswith("mean") else "left")
    for row in selection.get("table", []):
        table.add_row(
            escape(row["block"]),
            escape(row["name"]),
            f"{row['mean']:.4f}",
            " ".join(f"{x:.4f}" for x in row["windows"]),
            "yes" if row["baseline"] else "",
        )
    out.print(table)
    for note in selection.get("notes", []):
        out.print(f"note: {note}", markup=False, highlight=False)
    out.print(
        f"selection took {selection.get('seconds')} s of a {selection.get('budget')} s budget",
        markup=False,
        highlight=False,
    )


@model_app.command("show")
def model_show_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the model's metadata as JSON.")] = False,
) -> None:
    """Show the trained model: what was chosen per block, why, and the validation table."""
    from campaigns.errors import NotFoundError
    from recommender.errors import ModelFileError
    from recommender.storage import ModelFileMissing, model_files, read_metadata

    npz, _ = model_files(settings(ctx).resolved_model_path())
    try:
        meta = read_metadata(npz)  # the copy inside the .npz: the one the model loads with
    except ModelFileMissing:
        raise NotFoundError(f"no model at {npz}: run `retain train`") from None
    except ModelFileError as exc:
        raise ConfigError(f"model metadata is unreadable ({exc}): run `retain train`") from None
    if as_json:
        print_json(meta)
        return
    _show_model(meta)


def _table(result: dict[str, Any]) -> None:
    for protocol, models in result["protocols"].items():
        n = result["customers"][protocol]
        comparison = result.get("paired", {}).get(protocol, {})
        base = comparison.get("baseline")
        table = Table(title=f"{protocol}: {n} test customers, {result['cutoff']} .. {result['end']}")
        for col in ("model", "nDCG@10", "HR@10", "P@10", "MAP@10", "coverage", f"vs {base or 'baseline'}"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for name, m in models.items():
            pair = comparison.get(name)
            vs = "" if not pair or name == base else f"{pair['diff']:+.4f} ± {pair['se']:.4f}"
            table.add_row(
                escape(name),
                *(f"{m[k]:.4f}" for k in ("ndcg@10", "hr@10", "p@10", "map@10")),
                f"{m['coverage']:.1%}",
                vs,
            )
        out.print(table)
    selection = result.get("selection")
    if selection:
        for block, choice in selection.get("choice", {}).items():
            out.print(f"shipped {block}: {choice['reason']}", markup=False, highlight=False)


def evaluation_json(result: dict[str, Any], holdout_days: int) -> dict[str, Any]:
    """``retain evaluate --json``: per protocol the test window, counts, every model's metrics with
    coverage, and the paired difference against the strongest baseline."""
    protocols = {}
    for protocol, models in result["protocols"].items():
        comparison = result.get("paired", {}).get(protocol, {})
        protocols[protocol] = {
            "test_window": {"start": result["cutoff"], "end": result["end"], "days": holdout_days},
            "test_customers": result["customers"][protocol],
            "strongest_baseline": comparison.get("baseline"),
            "models": {
                name: {
                    **m,
                    **(
                        {"vs_baseline": comparison[name]}
                        if name in comparison and name != comparison.get("baseline")
                        else {}
                    ),
                }
                for name, m in models.items()
            },
        }
    return {
        "protocols": protocols,
        "half_life_days": result.get("half_life_days"),
        "tuned_parameters": result.get("tuned", False),
        "shipped": result.get("selection"),
    }


evaluate_app = typer.Typer()  # help: the callback's docstring
app.add_typer(evaluate_app, name="evaluate")


@evaluate_app.callback(invoke_without_command=True)
def evaluate_cmd(
    ctx: typer.Context,
    holdout_days: HoldoutDays = 30,
    cutoff: Cutoff = None,
    params: Params = None,
    budget: Budget = 45.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Temporal holdout: what `retain train` would ship (``shipped``, selected on the training side of the
    cutoff) beside every model and baseline, for the discover, repeat and next-basket protocols.

    Without --cutoff the test window is the last --holdout-days of data. Parameters that `retain tune`
    stored for this database are used for the als and blend rows unless --params says otherwise.
    `retain evaluate lifecycle` evaluates the lifecycle predictions instead.
    """
    if ctx.invoked_subcommand is not None:
        return
    from campaigns.training import evaluate_store

    store = open_store(ctx)
    result = evaluate_store(
        store,
        cutoff=_date(cutoff),
        holdout_days=holdout_days,
        params=_params(params),
        settings=settings(ctx),
        budget=budget,
        progress=None if as_json else (lambda m: err.print(m, markup=False, highlight=False)),
    )
    if as_json:
        print_json(evaluation_json(result, holdout_days))
        return
    _table(result)


@app.command("tune")
def tune_cmd(
    ctx: typer.Context,
    holdout_days: HoldoutDays = 30,
    cutoff: Cutoff = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            help=f"Train this discover scorer ({', '.join(MODEL_NAMES)}) with the tuned parameters instead of selecting.",
        ),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option("--budget", min=1.0, metavar="SECONDS", help="Stop the search after this many seconds."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the chosen parameters as JSON.")] = False,
) -> None:
    """Search parameters on a validation window carved from the data before --cutoff, then train with
    them (on data before --cutoff) and record them in the model file."""
    from campaigns.training import train_model, tune_store

    store = open_store(ctx)
    when = _date(cutoff)
    found = tune_store(
        store, cutoff=when, holdout_days=holdout_days, budget=budget, progress=lambda m: err.print(m)
    )
    tuning = {k: v for k, v in found.items() if k != "trials"}
    path = train_model(store, settings(ctx), model=model, cutoff=when, tuning=tuning)
    if as_json:
        print_json(tuning)
        return
    v = found["validation"]
    out.print(
        f"validation window from {v['cutoff']} ({v['days']} days): discover nDCG@10 {v['discover_ndcg@10']:.4f}, "
        f"repeat nDCG@10 {v['repeat_ndcg@10']:.4f}"
    )
    out.print(f"half-life {found['half_life_days']} days; parameters {json.dumps(found['params'])}")
    out.print(f"model trained with them -> {path}")
