"""``retain check CAMPAIGN``: is the email inbox-ready? (docs/checks.md)

Builds the campaign's email through the email factory exactly as a send would (no preview banner, the
wire message with its headers and DKIM signature) and runs campaigns/checks on it: size against
Gmail's clip, links, images, Can I Email for the ``check_clients``, axe-core and the layout in
Chromium, and the SpamAssassin score. A check whose tool is not installed is skipped with the reason.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from campaigns.checks import CHECK_NAMES, FAIL, PASS, SKIPPED, WARN, EmailChecker, EmailReport
from campaigns.cli.app import app, err, out, print_json, settings
from campaigns.config import Settings
from campaigns.definition import CampaignDefinition, find_campaign
from campaigns.errors import RetainError
from campaigns.factory import BuildOptions, EmailFactory, Prepared
from campaigns.kinds import ContextInputs, Member
from campaigns.kinds.fixture import fixture_member, load_fixture

STYLE = {PASS: "green", WARN: "yellow", FAIL: "red", SKIPPED: "dim"}
MARK = {PASS: "✓", WARN: "!", FAIL: "✗", SKIPPED: "–"}


def addressed(inputs: ContextInputs) -> ContextInputs:
    """Checks build the whole message: a customer without an address gets a placeholder one."""
    if inputs.customer.email is not None:
        return inputs
    return replace(inputs, customer=replace(inputs.customer, email="check@example.invalid"))


def sendable_factory(s: Settings, definition: CampaignDefinition, **sources: Any) -> EmailFactory:
    """A factory building the email as a send would (wire bytes, no banner), but never refusing a big one."""
    options = BuildOptions(run_key="check", refuse_oversized=False)
    return EmailFactory(
        s,
        definition,
        catalogue=sources.get("catalogue"),
        recommender=sources.get("recommender"),
        options=options,
    )


def fixture_email(s: Settings, definition: CampaignDefinition) -> Prepared | str:
    """The campaign's preview fixture as sent; a skip reason instead when it renders nothing."""
    inputs = addressed(load_fixture(definition, s.currency))
    item = sendable_factory(s, definition).prepare_inputs(fixture_member(inputs), inputs)
    return item if isinstance(item, Prepared) else item.reason


def largest_email(
    s: Settings, definition: CampaignDefinition, store: Any
) -> tuple[str, Prepared | str] | None:
    """The largest real email (campaigns/largest.py) as sent, with its description."""
    from campaigns.largest import largest_inputs

    largest = largest_inputs(definition, store)
    if largest is None:
        return None
    member, inputs, what = largest
    item = sendable_factory(s, definition).prepare_inputs(member, addressed(inputs))
    return f"the largest real email: {what}", item if isinstance(item, Prepared) else item.reason


def customer_email(
    s: Settings, definition: CampaignDefinition, store: Any, ref: str
) -> tuple[str, Prepared | str]:
    from campaigns.factory import campaign_recommender

    customer = store.get_customer(ref)
    if customer is None:
        raise RetainError(f"no customer {ref!r} (give a database id, the shop's customer id or an email)")
    order = None
    if definition.kind_plugin.needs.similar_to_order:
        orders = store.orders_for_customers([customer.id], limit_per_customer=1)[customer.id]
        order = orders[0] if orders else None
    factory = sendable_factory(
        s, definition, catalogue=store, recommender=campaign_recommender(definition, s, store)
    )
    customer = customer if customer.email else replace(customer, email="check@example.invalid")
    item = factory.prepare([Member(customer, order)])[0]
    label = f"customer {customer.id} (shop id {customer.external_id})"
    return label, item if isinstance(item, Prepared) else item.reason


def print_report(report: EmailReport) -> None:
    out.print(
        f"\n[bold]{escape(report.campaign)}[/bold] · {escape(report.source)}\n"
        f"[dim]subject:[/dim] {escape(report.subject)}"
    )
    table = Table("check", "status", "result", show_edge=False, pad_edge=False)
    for r in report.results:
        table.add_row(r.name, f"[{STYLE[r.status]}]{MARK[r.status]} {r.status}[/]", escape(r.summary))
    out.print(table)
    for r in report.results:
        for f in r.findings:
            where = f" [dim]({escape(f.where)})[/dim]" if f.where else ""
            out.print(f"  [{STYLE[f.severity]}]{MARK[f.severity]}[/] {r.name}: {escape(f.message)}{where}")
    caniemail = report.result("caniemail")
    if caniemail is not None and caniemail.data.get("unsupported"):
        out.print("  [dim]Can I Email, not supported:[/dim]")
        for row in caniemail.data["unsupported"]:
            instead = (
                f" → {row['degrades_to']}" if row.get("degrades_to") else " → [red]may break the layout[/red]"
            )
            out.print(
                f"    {escape(row['feature'])} [dim]({escape(', '.join(row['clients']))})[/dim]{instead}"
            )
    spam = report.result("spam")
    if spam is not None and spam.data.get("rules") is not None:
        out.print("  [dim]SpamAssassin rules (setup rules are not counted):[/dim]")
        for row in spam.data["rules"]:
            setup = " [dim](setup)[/dim]" if row["setup"] else ""
            out.print(f"    {row['score']:>5.1f}  {row['rule']:<26} {escape(row['description'])}{setup}")


@app.command("check")
def check_command(
    ctx: typer.Context,
    campaign: Annotated[str, typer.Argument(help="Campaign name (see `retain campaigns`).")],
    customer: Annotated[
        str | None,
        typer.Option("--customer", metavar="ID", help="Check this customer's email (id, shop id or email)."),
    ] = None,
    fixture: Annotated[
        bool, typer.Option("--fixture", help="Check only the preview fixture, not the largest real email.")
    ] = False,
    only: Annotated[
        str | None,
        typer.Option(
            "--only", metavar="NAMES", help=f"Comma-separated checks to run (of {', '.join(CHECK_NAMES)})."
        ),
    ] = None,
    screenshots: Annotated[
        Path | None, typer.Option("--screenshots", metavar="DIR", help="Save the browser's screenshots here.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")] = False,
) -> None:
    """Check a campaign's email as it would be sent: size against Gmail's clip, links (https, UTM, no
    loopback), images (https, alt, width), Can I Email features for the check_clients setting, axe-core
    accessibility and the layout at 375/600 px in Chromium, and the SpamAssassin score. Checks the
    preview fixture and, with a database, the largest real email (or --customer). Exit 1 on a failure."""
    s = settings(ctx)
    definition = find_campaign(Path(s.templates_dir), campaign)
    names = tuple(n.strip() for n in only.split(",") if n.strip()) if only else CHECK_NAMES
    unknown = sorted(set(names) - set(CHECK_NAMES))
    if unknown:
        raise RetainError(f"--only: unknown check(s) {', '.join(unknown)} (known: {', '.join(CHECK_NAMES)})")
    emails: list[tuple[str, Prepared | str]] = []
    store = None
    try:
        if customer is not None:
            from campaigns.cli.app import open_store

            store = open_store(ctx)
            emails.append(customer_email(s, definition, store, customer))
        else:
            emails.append(("preview fixture", fixture_email(s, definition)))
            if not fixture:
                from campaigns.cli.content import lint_store

                store = lint_store(s)
                largest = largest_email(s, definition, store) if store is not None else None
                if largest is not None:
                    emails.append(largest)
                elif not json_output:
                    err.print("[dim]no orders in the database: checking the preview fixture only[/dim]")
    finally:
        if store is not None:
            store.close()
    reports: list[EmailReport] = []
    with EmailChecker(s, only=names, screenshots=screenshots) as checker:
        for n, (source, item) in enumerate(emails):
            if isinstance(item, str):
                err.print(f"[yellow]![/yellow] {escape(source)}: nothing to check ({escape(item)})")
                continue
            reports.append(checker.check(item, source=source, name=f"{definition.name}-{n}"))
    if json_output:
        print_json([r.to_json() for r in reports])
    else:
        for report in reports:
            print_report(report)
    failed = [r for r in reports if not r.ok]
    if failed:
        raise typer.Exit(1)
