"""The ``retain`` command. See ``retain --help``; each command group lives in its own module."""

from __future__ import annotations

import sys

import click
import typer
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError
from typer._click.exceptions import ClickException as TyperClickException

# command modules register themselves on `app` when imported
from campaigns.cli import audience as _audience  # noqa: E402,F401
from campaigns.cli import check as _check  # noqa: E402,F401
from campaigns.cli import content as _content  # noqa: E402,F401
from campaigns.cli import coupons as _coupons  # noqa: E402,F401
from campaigns.cli import data as _data  # noqa: E402,F401
from campaigns.cli import lifecycle as _lifecycle  # noqa: E402,F401
from campaigns.cli import recs as _recs  # noqa: E402,F401
from campaigns.cli import report as _report  # noqa: E402,F401
from campaigns.cli import schedule as _schedule  # noqa: E402,F401
from campaigns.cli import sending as _sending  # noqa: E402,F401
from campaigns.cli import setup as _setup  # noqa: E402,F401
from campaigns.cli import web as _web  # noqa: E402,F401
from campaigns.cli import worker as _worker  # noqa: E402,F401
from campaigns.cli.app import app, err
from campaigns.config import set_thread_env
from campaigns.errors import RetainError


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``retain`` console script; returns the exit status."""
    set_thread_env()
    command = typer.main.get_command(app)
    try:
        # typer (which vendors its own click) returns the code of `typer.Exit(n)` instead of raising
        status = command.main(args=argv, prog_name="retain", standalone_mode=False)
    except RetainError as exc:
        err.print("[red]error:[/red] " + escape(str(exc)))
        return 1
    except SQLAlchemyError as exc:
        # a database problem we did not anticipate: say what failed, without a traceback or a password
        from campaigns.store.faults import describe

        err.print("[red]database error:[/red] " + escape(describe(exc)))
        return 1
    except click.exceptions.Exit as exc:
        return int(exc.exit_code)
    except (click.ClickException, TyperClickException) as exc:
        exc.show()
        return int(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        err.print("aborted")
        return 130
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return status if isinstance(status, int) else 0


def run() -> None:
    sys.exit(main())


__all__ = ["app", "main", "run"]
