"""Data commands: ``retain db upgrade``, ``retain import ...``, ``retain stats``."""

from __future__ import annotations

import typer

from campaigns.cli.app import app, out, settings
from campaigns.store.engine import create_db_engine, current_revision, safe_url, upgrade

db_app = typer.Typer(help="Database schema commands.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> None:
    """Apply the Alembic migrations to the database (safe to run again)."""
    url = settings(ctx).resolved_database_url()
    engine = create_db_engine(url)
    upgrade(engine)
    out.print(f"{safe_url(url)} is at revision {current_revision(engine)}")
    engine.dispose()
