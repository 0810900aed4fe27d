"""Template commands: ``retain campaigns``, ``retain render``, ``retain lint``."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from campaigns.cli.app import app, err, out, settings
from campaigns.config import Settings
from campaigns.definition import CampaignDefinition, campaign_paths, find_campaign, load_campaign
from campaigns.errors import NotFoundError, RetainError, TemplateError
from campaigns.kinds import NoContent, build_context
from campaigns.kinds.fixture import load_fixture
from campaigns.message import DkimConfig, build_campaign_message
from campaigns.render import CampaignRenderer


class OutputFormat(StrEnum):
    html = "html"
    text = "text"
    eml = "eml"


def _templates_dir(s: Settings) -> Path:
    return Path(s.templates_dir)


@app.command("campaigns")
def list_campaigns(ctx: typer.Context) -> None:
    """List the campaigns in templates/emails with kind, segment, schedule and any problems."""
    s = settings(ctx)
    table = Table("campaign", "kind", "segment", "schedule", "marketing", "problems")
    bad = 0
    for path in campaign_paths(_templates_dir(s)):
        try:
            d = load_campaign(path)
            CampaignRenderer(d, s)  # compiles the templates: syntax errors, missing includes
        except RetainError as exc:
            bad += 1
            table.add_row(escape(path.stem), "", "", "", "", f"[red]{escape(str(exc))}[/red]")
            continue
        segment = d.segment or ("(inline rules)" if d.segment_rules else "(everyone)")
        schedule = d.schedule.describe() if d.schedule else "(manual)"
        table.add_row(
            escape(d.name), d.kind, escape(segment), escape(schedule), "yes" if d.marketing else "no", ""
        )
    out.print(table)
    if bad:
        raise TemplateError(f"{bad} campaign template(s) have problems (see the table)")


def _recommender_inputs(
    definition: CampaignDefinition, s: Settings, store: Any, customer_id: int, orders: list[Any]
) -> dict[str, Any]:
    """Recommendation (and similar items for post-purchase) from the trained model, if there is one."""
    try:
        from campaigns.training import load_recommender  # issue #3
    except ImportError:
        err.print(
            "[yellow]warning:[/yellow] the recommender is not available; rendering without recommendations"
        )
        return {"recommendation": None, "similar": None}
    recommender = load_recommender(s, store)
    spec = definition.recommend
    rules = spec.rules()
    if definition.kind == "post_purchase":
        bought = [line.product.id for line in orders[0].lines] if orders else []
        n = definition.follow_up.similar_count if definition.follow_up else spec.count
        similar = recommender.similar_items(bought, n=n + len(bought), rules=rules) if bought else None
        return {"recommendation": None, "similar": similar}
    recs = recommender.recommend([customer_id], blocks=list(spec.blocks), n=spec.count, rules=rules)
    return {"recommendation": recs[0] if recs else None, "similar": None}


def _store_inputs(
    ctx: typer.Context, definition: CampaignDefinition, s: Settings, ref: str
) -> dict[str, Any]:
    from campaigns.cli.app import open_store

    store = open_store(ctx)
    try:
        customer = store.get_customer(ref)
        if customer is None:
            raise NotFoundError(
                f"no customer {ref!r} (give a database id, the shop's customer id or an email)"
            )
        orders = store.orders_for_customers([customer.id])[customer.id]
        inputs = _recommender_inputs(definition, s, store, customer.id, orders)
        wanted: set[int] = set()
        for block in (inputs["recommendation"].blocks if inputs["recommendation"] else ()) + (
            (inputs["similar"],) if inputs["similar"] else ()
        ):
            wanted.update(item.product_id for item in block.items)
        products = store.products_by_ids(wanted)
        for order in orders:
            products.update({line.product.id: line.product for line in order.lines})
        return dict(
            inputs, customer=customer, products=products, orders=orders, order=orders[0] if orders else None
        )
    finally:
        store.close()


def _write(data: str | bytes, target: Path | None) -> None:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if target is None or str(target) == "-":
        sys.stdout.buffer.write(raw)
        sys.stdout.flush()
    else:
        target.write_bytes(raw)
        err.print(f"wrote {escape(str(target))} ({len(raw):,} bytes)")


@app.command("render")
def render_command(
    ctx: typer.Context,
    campaign: Annotated[str, typer.Argument(help="Campaign name (see `retain campaigns`).")],
    customer: Annotated[
        str | None, typer.Option("--customer", metavar="ID", help="Customer id, shop id or email.")
    ] = None,
    fixture: Annotated[
        bool, typer.Option("--fixture", help="Use the campaign's preview fixture instead of the database.")
    ] = False,
    fmt: Annotated[
        OutputFormat, typer.Option("--format", help="html, text, or eml (the full wire message).")
    ] = OutputFormat.html,
    out_file: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Render one customer's email with their real recommendations (or the preview fixture)."""
    if (customer is None) == (not fixture):
        raise RetainError("retain render: give exactly one of --customer ID or --fixture")
    s = settings(ctx)
    definition = find_campaign(_templates_dir(s), campaign)
    inputs = (
        load_fixture(definition, s.currency) if fixture else _store_inputs(ctx, definition, s, str(customer))
    )
    try:
        context = build_context(definition, s, **inputs, run_key="preview", is_preview=True)
    except NoContent as skip:
        raise RetainError(
            f"customer {inputs['customer'].id} would be skipped by {definition.name}: {skip.reason}"
        ) from None
    rendered = CampaignRenderer(definition, s).render(context)
    if fmt is OutputFormat.html:
        _write(rendered.html, out_file)
    elif fmt is OutputFormat.text:
        _write(rendered.text, out_file)
    else:
        c = inputs["customer"]
        name = " ".join(p for p in (c.first_name, c.last_name) if p) or None
        message = build_campaign_message(
            definition,
            s,
            rendered,
            context,
            to_email=c.email or "preview@example.invalid",
            to_name=name,
            run_key="preview",
            dkim=DkimConfig.from_settings(s),
        )
        _write(message.data, out_file)


def lint_campaign(definition_path: Path, s: Settings) -> list[str]:
    """Problems with one campaign: definition, template compile, and a full render of its fixture."""
    try:
        definition = load_campaign(definition_path)
        renderer = CampaignRenderer(definition, s)
        inputs = load_fixture(definition, s.currency)
        context = build_context(definition, s, **inputs, run_key="lint", is_preview=True)
        rendered = renderer.render(context)
        full = renderer.render_full(context)
        email = inputs["customer"].email or "lint@example.invalid"
        build_campaign_message(definition, s, rendered, context, to_email=email, to_name=None, run_key="lint")
    except NoContent as skip:
        return [f"{definition_path}: the preview fixture renders nothing ({skip.reason})"]
    except RetainError as exc:
        return [str(exc)]
    problems = []
    try:
        from campaigns.segments import load_segments, resolve_segment

        resolve_segment(definition.segment_rules or definition.segment, load_segments(Path(s.segments_file)))
    except RetainError as exc:
        problems.append(f"{definition_path}: segment: {exc}")
    if "[[slot" in rendered.html or "[[slot" in rendered.text:
        problems.append(f"{definition_path}: a value marker leaked into the output (please report this)")
    if rendered.html != full.html or rendered.text != full.text:
        problems.append(
            f"{definition_path}: the compiled render differs from the full render (please report this)"
        )
    if context["unsubscribe_url"] not in rendered.html:
        problems.append(f"{definition_path}: the HTML has no unsubscribe link (extend layouts/base.mjml)")
    return problems


@app.command("lint")
def lint_command(
    ctx: typer.Context,
    campaign: Annotated[str | None, typer.Argument(help="Only this campaign (default: all).")] = None,
) -> None:
    """Validate every template and render every preview fixture; exit 1 on any problem."""
    s = settings(ctx)
    if campaign:
        direct = _templates_dir(s) / "emails" / f"{campaign}.mjml"
        paths = [direct] if direct.exists() else [find_campaign(_templates_dir(s), campaign).path]
    else:
        paths = campaign_paths(_templates_dir(s))
    failed = 0
    for path in paths:
        problems = lint_campaign(path, s)
        if problems:
            failed += 1
            for problem in problems:
                err.print(f"[red]✗[/red] {escape(problem)}")
        else:
            out.print(f"[green]✓[/green] {escape(path.name)}")
    if failed:
        raise TemplateError(f"{failed} of {len(paths)} campaign(s) have problems")
