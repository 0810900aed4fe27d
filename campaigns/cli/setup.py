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


@app.command("doctor")
def doctor_cmd(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="The checklist as JSON.")] = False,
) -> None:
    """The go-live checklist: public URL, From domain, address, demo data, secret key and its backup, DKIM,
    quiet hours, frequency cap, sender rate limit. Exit status 1 when a must is missing (offline checks)."""
    from rich.table import Table

    from campaigns.cli.app import open_store, print_json
    from campaigns.golive import checklist, failed_musts, is_real_transport
    from campaigns.senders.dsn import mask_dsn

    s = settings(ctx)
    store = open_store(ctx)
    try:
        checks = checklist(s, store)
    finally:
        store.close()
    missing = failed_musts(checks)
    if as_json:
        print_json(
            {
                "ready": not missing,
                "sender": mask_dsn(s.resolved_sender()),
                "real_transport": is_real_transport(s.resolved_sender()),
                "checks": [{"name": c.name, "ok": c.ok, "must": c.must, "detail": c.detail} for c in checks],
            }
        )
    else:
        t = Table(title="Go-live checklist", title_justify="left")
        for col in ("", "check", "found / what to do"):
            t.add_column(col)
        for c in checks:
            mark = (
                "[green]ok[/green]" if c.ok else ("[red]MUST[/red]" if c.must else "[yellow]should[/yellow]")
            )
            t.add_row(mark, escape(c.name), escape(c.detail))
        out.print(t)
        sender = s.resolved_sender()
        kind = "a real transport" if is_real_transport(sender) else "no real delivery"
        out.print(f"sender: {escape(mask_dsn(sender))} ({kind})")
        if missing:
            out.print(
                f"[red]not ready:[/red] {len(missing)} must(s) missing — a send through a real transport "
                f"refuses until they are fixed (--allow-unsafe-send overrides, for a test server)"
            )
        else:
            out.print("[green]ready to go live[/green]")
    if missing:
        raise typer.Exit(1)


@app.command("init")
def init_cmd(
    folder: Annotated[Path, typer.Argument(help="The new shop's folder (created; must be new or empty).")],
    name: Annotated[
        str | None, typer.Option("--name", help="The shop's name (default: the folder's).")
    ] = None,
) -> None:
    """Create a shop folder: its own retain.toml (real clock; currency from the first import), templates/
    with the starter campaigns disabled, segments.yaml and var/ with a new signing key."""
    from campaigns.shop_init import init_shop

    copied = init_shop(folder, name)
    where = folder.resolve()
    out.print(
        f"created {escape(str(where))}: retain.toml, templates/ ({len(copied)} campaigns, all enabled: false), var/"
    )
    out.print("next:")
    out.print(f"  cd {escape(str(where))}")
    out.print("  retain import orders YOUR_EXPORT.csv --format shopify   # the currency is taken from it")
    out.print("  retain train && retain send weekly-picks --dry-run")
    out.print(
        "  edit retain.toml (address, From, public_url), set enabled: true in a campaign, then retain doctor"
    )
