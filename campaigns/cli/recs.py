"""Recommender commands: ``retain train``, ``retain evaluate``, ``retain tune``."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
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
MODEL_NAMES = ("als", "blend", "itemknn")


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
        str, typer.Option("--model", help=f"Discover scorer: {', '.join(MODEL_NAMES)}.")
    ] = "blend",
    params: Params = None,
    cutoff: Cutoff = None,
) -> None:
    """Fit the recommender on every purchase (before --cutoff) and save the model file."""
    from campaigns.training import train_model

    if model not in MODEL_NAMES:
        raise ConfigError(f"option --model: {model!r} is not one of {', '.join(MODEL_NAMES)}")
    store = open_store(ctx)
    started = datetime.now()
    path = train_model(store, settings(ctx), model=model, params=_params(params), cutoff=_date(cutoff))
    seconds = (datetime.now() - started).total_seconds()
    out.print(f"trained {model} in {seconds:.1f} s -> {path}")


def _table(result: dict[str, Any]) -> None:
    for protocol, models in result["protocols"].items():
        n = result["customers"][protocol]
        table = Table(title=f"{protocol}: {n} test customers, {result['cutoff']} .. {result['end']}")
        for col in ("model", "nDCG@10", "HR@10", "P@10", "MAP@10", "coverage"):
            table.add_column(col, justify="left" if col == "model" else "right")
        for name, m in models.items():
            table.add_row(
                name, *(f"{m[k]:.4f}" for k in ("ndcg@10", "hr@10", "p@10", "map@10")), f"{m['coverage']:.1%}"
            )
        out.print(table)


@app.command("evaluate")
def evaluate_cmd(
    ctx: typer.Context,
    holdout_days: HoldoutDays = 30,
    cutoff: Cutoff = None,
    params: Params = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")] = False,
) -> None:
    """Temporal holdout: every model beside both baselines, for the discover and repeat protocols.

    Without --cutoff the test window is the last --holdout-days of data.
    """
    from campaigns.training import evaluate_store

    store = open_store(ctx)
    result = evaluate_store(store, cutoff=_date(cutoff), holdout_days=holdout_days, params=_params(params))
    if as_json:
        print_json(
            {
                protocol: {
                    name: {k: v for k, v in m.items() if k != "coverage"} for name, m in models.items()
                }
                for protocol, models in result["protocols"].items()
            }
        )
        return
    _table(result)


@app.command("tune")
def tune_cmd(
    ctx: typer.Context,
    holdout_days: HoldoutDays = 30,
    cutoff: Cutoff = None,
    model: Annotated[
        str, typer.Option("--model", help=f"Discover scorer: {', '.join(MODEL_NAMES)}.")
    ] = "blend",
    as_json: Annotated[bool, typer.Option("--json", help="Print the chosen parameters as JSON.")] = False,
) -> None:
    """Search parameters on a validation window carved from the data before --cutoff, then train with
    them (on data before --cutoff) and record them in the model file."""
    from campaigns.training import train_model, tune_store

    store = open_store(ctx)
    when = _date(cutoff)
    found = tune_store(store, cutoff=when, holdout_days=holdout_days, progress=lambda m: err.print(m))
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
