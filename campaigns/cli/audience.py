"""Audience commands: ``retain segments`` (list with sizes) and ``retain segment NAME`` (size + sample)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from campaigns.cli.app import app, finite, open_store, out, settings
from campaigns.clock import reference_now
from campaigns.segments import (
    DEFAULT_SEGMENTS_FILE,
    SegmentMember,
    count_segment,
    load_segments,
    resolve_segment,
    sample_segment,
)

SegmentsFile = Annotated[
    Path,
    typer.Option("--file", "-f", help="The segments file.", show_default=True),
]
AsOf = Annotated[
    str | None,
    typer.Option(
        "--as-of",
        metavar="WHEN",
        help="The reference 'now': latest-order (historical data), an ISO date/time, or '' for the clock "
        "(default: setting as_of).",
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of a table.")]


def _now(ctx: typer.Context, store: Any, as_of: str | None) -> datetime:
    return reference_now(settings(ctx).with_overrides(as_of=as_of), store)


@app.command("segments")
def segments_cmd(
    ctx: typer.Context,
    file: SegmentsFile = DEFAULT_SEGMENTS_FILE,
    as_of: AsOf = None,
    as_json: JsonOut = False,
) -> None:
    """List the named segments with their current sizes."""
    segments = load_segments(file)
    store = open_store(ctx)
    now = _now(ctx, store, as_of)
    sizes = {name: count_segment(store, seg, now=now) for name, seg in segments.items()}
    if as_json:
        payload = {
            "as_of": now.isoformat(),
            "segments": [
                {"name": name, "description": seg.description, "size": sizes[name], "rules": seg.rules}
                for name, seg in segments.items()
            ],
        }
        typer.echo(json.dumps(finite(payload), allow_nan=False))
        return
    table = Table(title=f"Segments in {file} as of {now:%Y-%m-%d %H:%M} UTC", title_justify="left")
    table.add_column("segment")
    table.add_column("customers", justify="right")
    table.add_column("description")
    for name, seg in segments.items():
        table.add_row(escape(name), f"{sizes[name]:,}", escape(seg.description))
    out.print(table)


def _member_json(m: SegmentMember) -> dict[str, Any]:
    c = m.customer
    return {
        "id": c.id,
        "external_id": c.external_id,
        "email": c.email,
        "name": " ".join(p for p in (c.first_name, c.last_name) if p) or None,
        "country": c.country,
        "orders": m.orders,
        "spend": round(m.spend, 2),
        "first_order_at": m.first_order_at.isoformat(),
        "last_order_at": m.last_order_at.isoformat(),
    }


@app.command("segment")
def segment_cmd(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="A segment name from the segments file.")],
    sample: Annotated[int, typer.Option("--sample", min=0, help="How many members to show.")] = 10,
    file: SegmentsFile = DEFAULT_SEGMENTS_FILE,
    as_of: AsOf = None,
    as_json: JsonOut = False,
) -> None:
    """Show one segment: its rules, its size and a sample of its members (lowest customer ids)."""
    segment = resolve_segment(name, load_segments(file))
    store = open_store(ctx)
    now = _now(ctx, store, as_of)
    size = count_segment(store, segment, now=now)
    members = sample_segment(store, segment, now=now, limit=sample) if sample else []
    if as_json:
        payload = {
            "name": segment.name,
            "description": segment.description,
            "rules": segment.rules,
            "as_of": now.isoformat(),
            "size": size,
            "sample": [_member_json(m) for m in members],
        }
        typer.echo(json.dumps(finite(payload), allow_nan=False))
        return
    out.print(f"[bold]{escape(segment.name)}[/bold]: {escape(segment.description)}")
    out.print(f"rules (all must hold): {escape(json.dumps(segment.rules))}")
    out.print(f"{size:,} customers as of {now:%Y-%m-%d %H:%M} UTC")
    if not members:
        return
    table = Table()
    for col, justify in (
        ("id", "right"),
        ("customer", "left"),
        ("email", "left"),
        ("country", "left"),
        ("orders", "right"),
        ("spend", "right"),
        ("last order", "left"),
    ):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    for m in members:
        c = m.customer
        table.add_row(
            str(c.id),
            escape(c.external_id),
            escape(c.email or "-"),
            escape(c.country or "-"),
            str(m.orders),
            f"{m.spend:,.2f}",
            f"{m.last_order_at:%Y-%m-%d}",
        )
    out.print(table)
