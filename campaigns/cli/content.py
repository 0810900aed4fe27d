"""Template commands: ``retain campaigns``, ``retain render``, ``retain lint``."""

from __future__ import annotations

import sys
from dataclasses import replace
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from campaigns.checks import FAIL, TOOL_CHECKS, EmailChecker, static_checks
from campaigns.cli.app import app, err, out, settings
from campaigns.config import Settings
from campaigns.definition import CampaignDefinition, campaign_paths, find_campaign, load_campaign
from campaigns.errors import NotFoundError, RetainError, TemplateError
from campaigns.factory import BuildOptions, EmailFactory, Prepared, campaign_recommender, html_kb
from campaigns.kinds import ContextInputs, Member
from campaigns.kinds.fixture import fixture_member, load_fixture
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
            escape(d.name),
            d.kind,
            escape(segment),
            escape(schedule) + ("" if d.enabled else " [dim](disabled)[/dim]"),
            "yes" if d.marketing else "no",
            "",
        )
    out.print(table)
    if bad:
        raise TemplateError(f"{bad} campaign template(s) have problems (see the table)")


def _customer_member(ctx: typer.Context, definition: CampaignDefinition, ref: str) -> tuple[Any, Member, Any]:
    """(store, the customer as a member, the model) for ``render --customer``; the member carries their
    newest order when the kind follows up an order."""
    from campaigns.cli.app import open_store

    store = open_store(ctx)
    customer = store.get_customer(ref)
    if customer is None:
        store.close()
        raise NotFoundError(f"no customer {ref!r} (give a database id, the shop's customer id or an email)")
    order = None
    if definition.kind_plugin.needs.similar_to_order:
        orders = store.orders_for_customers([customer.id], limit_per_customer=1)[customer.id]
        order = orders[0] if orders else None
    try:
        recommender = campaign_recommender(definition, settings(ctx), store)
    except RetainError:
        store.close()
        raise
    return store, Member(customer, order), recommender


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
        OutputFormat,
        typer.Option("--format", help="html, text, or eml (the full wire message, as a send builds it)."),
    ] = OutputFormat.html,
    run_key: Annotated[
        str,
        typer.Option(
            "--run-key", help="Render as this run would (its Message-ID and X-Retain-Run); default: preview."
        ),
    ] = "preview",
    out_file: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="Write here instead of stdout.")
    ] = None,
) -> None:
    """Render one customer's email with their real recommendations (or the preview fixture).

    html and text carry the preview banner; eml is the wire message exactly as a send of --run-key
    builds it (only Date and the DKIM signature differ from one send to the next).
    """
    if (customer is None) == (not fixture):
        raise RetainError("retain render: give exactly one of --customer ID or --fixture")
    from campaigns.keys import check_key

    s = settings(ctx)
    check_key(s)
    definition = find_campaign(_templates_dir(s), campaign)
    eml = fmt is OutputFormat.eml
    # eml is the send's wire message, tracked links included (html/text keep the plain links)
    options = BuildOptions(run_key=run_key, preview=not eml, messages=eml, track_clicks=eml)
    store = None
    try:
        if fixture:
            inputs = load_fixture(definition, s.currency)
            factory = EmailFactory(s, definition, catalogue=None, recommender=None, options=options)
            item = factory.prepare_inputs(fixture_member(inputs), inputs)
        else:
            store, member, recommender = _customer_member(ctx, definition, str(customer))
            factory = EmailFactory(s, definition, catalogue=store, recommender=recommender, options=options)
            item = factory.prepare([member])[0]
    finally:
        if store is not None:
            store.close()
    if not isinstance(item, Prepared):
        raise RetainError(
            f"customer {item.member.customer.id} would be skipped by {definition.name}: {item.reason}"
        )
    if fmt is OutputFormat.html:
        _write(item.rendered.html, out_file)
    elif fmt is OutputFormat.text:
        _write(item.rendered.text, out_file)
    else:
        email = item.email
        if email is None:  # pragma: no cover - messages=True for eml
            raise RetainError("no message was built")
        _write(email.data, out_file)


def _addressed(inputs: ContextInputs) -> ContextInputs:
    """Lint builds the whole message: a customer without an address gets a placeholder one."""
    if inputs.customer.email is not None:
        return inputs
    return replace(inputs, customer=replace(inputs.customer, email="lint@example.invalid"))


def _lint_factory(s: Settings, definition: CampaignDefinition, options: BuildOptions) -> EmailFactory:
    return EmailFactory(s, definition, catalogue=None, recommender=None, options=options)


def lint_campaign(
    definition_path: Path, s: Settings, store: Any = None, checker: EmailChecker | None = None
) -> list[str]:
    """Problems with one campaign: definition, template compile, and a full render of its fixture
    through the email factory (context, compiled and full render, the wire message), and the failing
    findings of the email checks (campaigns/checks: links and images always; with a ``checker``, also
    Can I Email, axe-core, layout and SpamAssassin on the fixture as sent). With a ``store`` (a database
    with orders), also the largest real email (its size, links and images) and the catalogue names the
    campaign uses (campaigns/largest.py)."""
    try:
        definition = load_campaign(definition_path)
        inputs = _addressed(load_fixture(definition, s.currency))
        factory = _lint_factory(s, definition, BuildOptions(run_key="lint", preview=True))
        item = factory.prepare_inputs(fixture_member(inputs), inputs)
        if not isinstance(item, Prepared):
            return [f"{definition_path}: the preview fixture renders nothing ({item.reason})"]
        full = factory.renderer.render_full(item.context)
    except RetainError as exc:
        return [str(exc)]
    rendered, context = item.rendered, item.context
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
    if html_kb(rendered) > s.max_email_kb:
        problems.append(
            f"{definition_path}: the preview fixture renders {html_kb(rendered):.0f} KB of HTML, above "
            f"max_email_kb ({s.max_email_kb} KB; Gmail clips longer emails)"
        )
    problems += _lint_variants(definition_path, s, definition, factory, inputs)
    problems += _checked(definition_path, s, definition, checker)
    if store is not None:
        problems += _lint_with_data(definition_path, definition, s, store)
    return problems


def _lint_variants(
    path: Path, s: Settings, definition: CampaignDefinition, factory: EmailFactory, inputs: ContextInputs
) -> list[str]:
    """Each A/B variant rendered from the fixture: a variant whose subject, preheader, content or offer
    uses something undefined fails, named (the default variant was rendered above)."""
    problems = []
    from campaigns.variants import default_variant

    default = default_variant(definition)
    for variant in [v for v in definition.variants if v.name != default]:
        member = replace(fixture_member(inputs), variant=variant.name)
        try:
            factory.prepare_inputs(member, inputs)
        except RetainError as exc:
            problems.append(f"{path}: variant {variant.name!r}: {exc}")
    return problems


def _checked(
    path: Path, s: Settings, definition: CampaignDefinition, checker: EmailChecker | None
) -> list[str]:
    """The failing findings of the email checks on the fixture, built as a send builds it (size is
    reported by lint itself)."""
    from campaigns.cli.check import fixture_email

    try:
        item = fixture_email(s, definition)
    except RetainError as exc:
        return [f"{path}: {exc}"]
    if isinstance(item, str):
        return []
    if checker is not None:
        report = checker.check(item, source="preview fixture", name=definition.name)
        return [f"{path}: {problem}" for problem in report.problems() if not problem.startswith("size:")]
    results = static_checks(item.rendered.html, s, str(item.context["unsubscribe_url"]))
    return [
        f"{path}: {r.name}: {f.message}" + (f" ({f.where})" if f.where else "")
        for r in results
        if r.name != "size"
        for f in r.findings
        if f.severity == FAIL
    ]


def _lint_with_data(path: Path, definition: CampaignDefinition, s: Settings, store: Any) -> list[str]:
    """The largest real email and the catalogue names (campaigns/largest.py)."""
    from campaigns.largest import catalogue_problems, largest_inputs

    problems = catalogue_problems(definition, store, str(path))
    largest = largest_inputs(definition, store)
    if largest is None:
        return problems
    member, inputs, what = largest
    factory = _lint_factory(
        s, definition, BuildOptions(run_key="lint", messages=False, refuse_oversized=False)
    )
    try:
        item = factory.prepare_inputs(member, _addressed(inputs))
    except RetainError as exc:
        return [*problems, f"{path}: rendering {what}: {exc}"]
    if isinstance(item, Prepared):
        for result in static_checks(item.rendered.html, s, str(item.context["unsubscribe_url"]))[1:]:
            problems += [
                f"{path}: {what}: {result.name}: {f.message}" + (f" ({f.where})" if f.where else "")
                for f in result.findings
                if f.severity == FAIL
            ]
    if isinstance(item, Prepared) and html_kb(item.rendered) > s.max_email_kb:
        problems.append(
            f"{path}: {html_kb(item.rendered):.0f} KB of HTML for {what}: above max_email_kb "
            f"({s.max_email_kb} KB). Gmail clips such an email (hiding its footer and unsubscribe link), so "
            "`retain send` refuses it: show fewer products or order lines"
        )
    return problems


def lint_store(s: Settings) -> Any:
    """The database for lint's data checks, when there is one with orders (None otherwise: a missing
    SQLite file is not created, an unreachable or outdated database is skipped)."""
    from sqlalchemy.engine import make_url

    from campaigns.errors import DatabaseError
    from campaigns.store import Store

    url = s.resolved_database_url()
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").exists():
            return None
        store = Store.open(url)
        if store.catalog_counts().orders == 0:
            store.close()
            return None
        return store
    except (DatabaseError, ValueError):
        return None


@app.command("lint")
def lint_command(
    ctx: typer.Context,
    campaign: Annotated[str | None, typer.Argument(help="Only this campaign (default: all).")] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Skip the checks that start a program (Can I Email, axe-core, layout, SpamAssassin).",
        ),
    ] = False,
) -> None:
    """Validate every template and render every preview fixture; run the email checks on it (links,
    images, and when installed Can I Email, axe-core and the layout in Chromium, SpamAssassin: see
    `retain check`); with a database, render each campaign's largest real email (longest order, every
    block full: fails above max_email_kb, or with a bad link or image) and check the categories it names
    against the catalogue. Exit 1 on any problem."""
    s = settings(ctx)
    if campaign:
        direct = _templates_dir(s) / "emails" / f"{campaign}.mjml"
        paths = [direct] if direct.exists() else [find_campaign(_templates_dir(s), campaign).path]
    else:
        paths = campaign_paths(_templates_dir(s))
    store = lint_store(s)
    if store is None:
        out.print("[dim]no orders in the database: the largest-email and catalogue checks are skipped[/dim]")
    failed = 0
    checker = None if quick else EmailChecker(s, only=("links", "images", *TOOL_CHECKS))
    if checker is not None:
        for reason in dict.fromkeys(checker.tools.missing_reasons().values()):
            out.print(f"[dim]{escape(reason)}: those checks are skipped[/dim]")
    try:
        results = [(path, lint_campaign(path, s, store, checker)) for path in paths]
    finally:
        if checker is not None:
            checker.close()
    for path, problems in results:
        if problems:
            failed += 1
            for problem in problems:
                err.print(f"[red]✗[/red] {escape(problem)}")
        else:
            out.print(f"[green]✓[/green] {escape(path.name)}")
    if failed:
        raise TemplateError(f"{failed} of {len(paths)} campaign(s) have problems")
