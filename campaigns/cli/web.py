"""Web commands: ``retain preview`` (local preview + dashboard), ``retain serve`` (public endpoints),
``retain feedback`` (ratings to follow up)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from campaigns.cli.app import app, err, open_store, out, print_json, settings
from campaigns.errors import ConfigError


@app.command("preview")
def preview_command(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8024,
    allow_remote: Annotated[
        bool,
        typer.Option("--allow-remote", help="Allow a non-loopback --host (also needs preview_password)."),
    ] = False,
    segments_file: Annotated[
        Path | None,
        typer.Option("--segments", metavar="FILE", help="Segments file (default: segments.yaml)."),
    ] = None,
) -> None:
    """Preview every campaign as a real customer would see it, with live reload and the dashboard."""
    from campaigns.web.preview_app import create_preview_app
    from campaigns.web.security import check_bind, is_loopback
    from campaigns.web.server import serve

    s = settings(ctx)
    check_bind(host, allow_remote=allow_remote, password=s.preview_password)
    _check_port(port)
    store = open_store(ctx)
    hosts = None if is_loopback(host) else [host, "127.0.0.1", "localhost", "::1"]
    app_ = create_preview_app(store, s, segments_file=segments_file, allowed_hosts=hosts)
    shown = f"[{host}]" if ":" in host else host
    err.print(f"Retain preview on http://{shown}:{port}/  (dashboard: /dashboard; Ctrl-C to stop)")
    if not is_loopback(host):
        err.print("[yellow]reachable from other machines; protected by preview_password[/yellow]")
    try:
        serve(app_, host, port)
    finally:
        store.close()


@app.command("serve")
def serve_command(
    ctx: typer.Context,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="TCP port (public_url should point here).")] = 8026,
) -> None:
    """Serve the public endpoints: one-click unsubscribe (/u/TOKEN), feedback (/f/TOKEN), tracked links (/c/TOKEN).

    Put it behind the shop's domain (a reverse proxy) and set public_url to that address.
    """
    from campaigns.keys import check_key
    from campaigns.web.public import create_public_app
    from campaigns.web.server import serve

    s = settings(ctx)
    check_key(s)
    _check_port(port)
    store = open_store(ctx)
    err.print(
        f"Retain public endpoints on http://{host}:{port}/ (links in emails use {escape(s.public_url)})"
    )
    try:
        serve(create_public_app(store, s), host, port)
    finally:
        store.close()


@app.command("feedback")
def feedback_command(
    ctx: typer.Context,
    below: Annotated[int, typer.Option("--below", help="List ratings strictly below this (1-6).")] = 3,
    limit: Annotated[int, typer.Option("--limit", help="At most this many, newest first.")] = 200,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Low ratings from follow-up emails, newest first, for the shop to follow up."""
    if not 1 <= below <= 6:
        raise ConfigError(f"--below must be between 1 and 6 (ratings are 1-5), got {below}")
    store = open_store(ctx)
    try:
        rows = store.low_feedback(below, limit=limit)
    finally:
        store.close()
    if json_output:
        print_json(
            [
                {
                    "order": r.order_number,
                    "order_id": r.order_id,
                    "customer_id": r.customer_id,
                    "email": r.email,
                    "campaign": r.campaign,
                    "rating": r.rating,
                    "comment": r.comment,
                    "at": r.updated_at.isoformat(sep=" ", timespec="seconds"),
                }
                for r in rows
            ]
        )
        return
    if not rows:
        out.print(f"No ratings below {below}.")
        return
    table = Table("when (UTC)", "order", "customer", "email", "campaign", "rating", "comment")
    for r in rows:
        table.add_row(
            f"{r.updated_at:%Y-%m-%d %H:%M}",
            escape(r.order_number or str(r.order_id)),
            str(r.customer_id),
            escape(r.email or ""),
            escape(r.campaign),
            "★" * r.rating + "☆" * (5 - r.rating),
            escape(r.comment or ""),
        )
    out.print(table)
    err.print(f"{len(rows)} rating(s) below {below}")


def _check_port(port: int) -> None:
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, got {port}")
