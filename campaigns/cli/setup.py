"""Setting a shop up safely: ``retain secret rotate|backup|status``, ``retain doctor``, ``retain init``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from campaigns.cli.app import app, out, settings

secret_app = typer.Typer(help="The signing key of unsubscribe and feedback links.", no_args_is_help=True)
app.add_typer(secret_app, name="secret")


@secret_app.command("rotate")
def secret_rotate_cmd(
    ctx: typer.Context,
    keep_days: Annotated[
        int | None,
        typer.Option(
            "--keep-days",
            help="How long the replaced key still verifies links in mail already sent (default: rotated_key_days).",
        ),
    ] = None,
) -> None:
    """Make a new signing key; the old one keeps verifying links for --keep-days. Back up afterwards."""
    from campaigns.keys import rotate

    s = settings(ctx)
    days = s.rotated_key_days if keep_days is None else keep_days
    fp, kept = rotate(s, days)
    out.print(f"new signing key {fp} in {escape(str(Path(s.var_dir) / 'secret.key'))}")
    for k in kept:
        out.print(
            f"  still verifying: key retired {k.retired_at:%Y-%m-%d %H:%M}, kept until {k.keep_until:%Y-%m-%d}"
        )
    out.print("back the keys up now: retain secret backup FILE")


@secret_app.command("backup")
def secret_backup_cmd(
    ctx: typer.Context,
    destination: Annotated[Path, typer.Argument(help="A new file (mode 0600) to copy the keys to.")],
) -> None:
    """Copy the signing key and the rotated keys to a new file; keep it somewhere safe, off this machine."""
    from campaigns.keys import backup

    fp = backup(settings(ctx), destination)
    out.print(f"keys {fp} saved to {escape(str(destination))} (mode 0600): store it off this machine")


@secret_app.command("status")
def secret_status_cmd(ctx: typer.Context) -> None:
    """Where the key comes from, how many rotated keys still verify, and whether it is backed up."""
    from campaigns.keys import backed_up, check_key, old_keys

    s = settings(ctx)
    check_key(s)
    source = "setting 'secret_key'" if s.secret_key else str(Path(s.var_dir) / "secret.key")
    kept = old_keys(s.var_dir)
    out.print(f"signing key: {escape(source)}")
    out.print(f"rotated keys kept: {len(kept)}")
    out.print(f"backed up: {'yes' if backed_up(s) else 'no (retain secret backup FILE)'}")
