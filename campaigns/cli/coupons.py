"""``retain coupons import|export``: a campaign's pool of unique codes, and the codes issued (campaigns/coupons.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from campaigns.cli.app import app, err, open_store, settings
from campaigns.coupons import read_pool, write_export
from campaigns.definition import find_campaign

coupons_app = typer.Typer(
    help="Unique coupon codes: import a pool, export the codes issued.", no_args_is_help=True
)
app.add_typer(coupons_app, name="coupons")

EXPORT_HEADER = (
    "code",
    "customer",
    "email",
    "campaign",
    "run",
    "variant",
    "assigned_at",
    "source",
    "redeemed_by_order",
)


@coupons_app.command("import")
def coupons_import(
    ctx: typer.Context,
    campaign: Annotated[
        str, typer.Argument(help="The campaign (its front matter says coupons: {pool: true}).")
    ],
    file: Annotated[
        Path,
        typer.Argument(help="One code per line, or a CSV with a Code column (e.g. a bulk discount export)."),
    ],
) -> None:
    """Add codes to the campaign's pool. A duplicate or malformed code refuses the whole file, naming the line."""
    s = settings(ctx)
    definition = find_campaign(Path(s.templates_dir), campaign)
    codes = read_pool(file)
    store = open_store(ctx)
    try:
        added = store.import_coupon_pool(definition.name, codes, source=str(file))
        free = store.coupon_pool_free(definition.name)
    finally:
        store.close()
    note = (
        ""
        if definition.coupons and definition.coupons.pool
        else " (the campaign does not say coupons: {pool: true} yet)"
    )
    err.print(f"{added:,} codes added to the pool of {definition.name}; {free:,} free{note}")


@coupons_app.command("export")
def coupons_export(
    ctx: typer.Context,
    campaign: Annotated[str, typer.Argument(help="The campaign.")],
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write the CSV here (default: stdout).")
    ] = None,
) -> None:
    """The codes issued to recipients, as CSV for upload to the shop (cells safe from spreadsheet formulas)."""
    store = open_store(ctx)
    try:
        rows = store.issued_coupons(campaign)
    finally:
        store.close()
    text = write_export(
        (
            (
                r["code"],
                r["customer"],
                r["email"],
                campaign,
                r["run_key"],
                r["variant"] or "",
                r["assigned_at"],
                r["source"],
                r["redeemed_by_order"] or "",
            )
            for r in rows
        ),
        EXPORT_HEADER,
    )
    if out_file is None:
        sys.stdout.write(text)
    else:
        out_file.write_text(text, encoding="utf-8")
        err.print(f"wrote {len(rows):,} codes to {out_file}")
