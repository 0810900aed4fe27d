"""The ``retain`` Typer app, its global options, and how errors reach the user.

Command modules (``campaigns/cli/*.py``) register on :data:`app`. ``RetainError`` is printed as
a message with exit status 1 (never a traceback); usage errors exit with 2.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.console import Console

from campaigns.config import Settings, load_settings

app = typer.Typer(
    name="retain",
    help="Retain: personalized retention emails from your shop's purchase history.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

#: stdout for results, stderr for progress and messages
#: tables keep a readable width when piped (Rich would otherwise squeeze them into 80 columns)
out = Console(soft_wrap=True, highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass
class CliState:
    db: str | None = None
    config: str | None = None
    _settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config, database_url=self.db)
            demo = self._settings.demo_database
            if demo and demo != self._settings.resolved_database_url():
                err.print(
                    "[yellow]warning:[/yellow] the demo's retain.toml (as_of = latest-order, its currency and "
                    "shop) is being applied to another database; run `retain init DIR` for your shop's own "
                    "settings, or pass --config"
                )
        return self._settings


@app.callback()
def _global(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            metavar="URL",
            help="Database URL (default: $RETAIN_DATABASE_URL, retain.toml, sqlite:///var/retain.db).",
        ),
    ] = None,
    config: Annotated[
        str | None,
        typer.Option(
            "--config", metavar="PATH", help="Path of retain.toml (default: $RETAIN_CONFIG or ./retain.toml)."
        ),
    ] = None,
) -> None:
    ctx.obj = CliState(db=db, config=config)


def state(ctx: typer.Context) -> CliState:
    obj = ctx.find_root().obj
    if not isinstance(obj, CliState):  # called without the callback (tests invoking a sub-app)
        obj = CliState()
        ctx.find_root().obj = obj
    return obj


def settings(ctx: typer.Context) -> Settings:
    return state(ctx).settings


def open_store(ctx: typer.Context) -> Any:
    """The store for this invocation (migrated when empty)."""
    from campaigns.store import Store

    store = Store.open(settings(ctx).resolved_database_url())
    ctx.find_root().call_on_close(store.close)  # no connection outlives the command (PostgreSQL)
    return store


def finite(data: Any) -> Any:
    """``data`` with every non-finite float (inf, nan: overflowing sums of stored data) as ``None``."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [finite(v) for v in data]
    return data


def print_json(data: Any) -> None:
    """One JSON object on stdout, plain (no colours, no wrapping), for scripts; standard JSON only
    (never ``Infinity`` or ``NaN``: such values are written as null)."""
    text = json.dumps(finite(data), indent=2, default=str, ensure_ascii=False, allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def show_progress(json_output: bool = False) -> bool:
    """Progress bars only on a terminal, and never under --json."""
    return not json_output and sys.stderr.isatty()
