"""Sending commands: ``retain send``, ``retain runs``, ``retain run show``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from campaigns.cli.app import app, err, open_store, out, print_json, settings, show_progress
from campaigns.errors import ConfigError
from campaigns.status import DeliveryStatus, RunStatus
from campaigns.summary import RunSummary

run_app = typer.Typer(help="Inspect one run.", no_args_is_help=True)
app.add_typer(run_app, name="run")


def print_summary(summary: RunSummary) -> None:
    """Human summary of one run (also used by the demo)."""
    data = summary.to_json()
    verb = "would send" if summary.dry_run else "sent"
    count = data.get("would_send", data.get("sent", 0))
    line = f"[bold]{escape(summary.campaign)}[/bold] ({escape(summary.run_key)}): {summary.status}; {verb} {count:,}, holdout {summary.holdout:,}"
    line += f", failed {summary.failed:,}"
    if summary.unknown:
        line += f", unknown {summary.unknown:,}"
    if summary.deferred:
        line += f", deferred {summary.deferred:,} (until {summary.next_attempt_at})"
    out.print(line + f"  [{summary.seconds:.1f} s]")
    if summary.skipped:
        out.print(
            "  skipped: "
            + ", ".join(
                f"{escape(k)} {v:,}" for k, v in sorted(summary.skipped.items(), key=lambda kv: -kv[1])
            )
        )
    if summary.failures:
        out.print(
            "  failures: "
            + ", ".join(
                f"{escape(k)} {v:,}" for k, v in sorted(summary.failures.items(), key=lambda kv: -kv[1])
            )
        )
    if summary.unknown_reasons:
        out.print(
            "  unknown (handed over, no final reply; not re-sent): "
            + ", ".join(
                f"{k} {v:,}" for k, v in sorted(summary.unknown_reasons.items(), key=lambda kv: -kv[1])
            )
        )
    if summary.in_flight_resolved:
        out.print(
            f"  {summary.in_flight_resolved} messages were in flight during a crash: not re-sent (at most once)"
        )
    if summary.resent_unknown:
        out.print(f"  {summary.resent_unknown} unknown messages sent again (--at-least-once)")
    if summary.reason:
        out.print(f"  [yellow]{escape(summary.reason)}[/yellow]")
    if summary.report_path:
        out.print(f"  report: {escape(str(summary.report_path))}")


@app.command("send")
def send_cmd(
    ctx: typer.Context,
    campaign: Annotated[str, typer.Argument(help="Campaign name (templates/emails/<name>.mjml).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show who would get what, send nothing.")
    ] = False,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Write a per-customer CSV report here.")
    ] = None,
    run_key: Annotated[
        str | None,
        typer.Option(
            "--run-key", help="Run key; the same key resumes the same run (default: manual:<date>)."
        ),
    ] = None,
    sender: Annotated[
        str | None,
        typer.Option(
            "--sender", help="Sender DSN, e.g. smtp://host:587?tls=starttls, outbox://var/outbox, console://."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
    allow_unsafe_send: Annotated[
        bool,
        typer.Option(
            "--allow-unsafe-send",
            help="Send through a real transport even when go-live checks fail (a test server; the run records it). "
            "Also RETAIN_ALLOW_UNSAFE_SEND=1.",
        ),
    ] = False,
    at_least_once: Annotated[
        bool,
        typer.Option(
            "--at-least-once",
            help="Also re-send this run's `unknown` messages (handed to the server, no final reply): "
            "each may then arrive twice. Default: at most once, never re-sent.",
        ),
    ] = False,
) -> None:
    """Send a campaign to its audience (exactly once per run key), or --dry-run it.

    A send through a real transport (not outbox, console or memory) refuses while a go-live check fails
    (`retain doctor` lists them): public https URL, a real From domain, the shop's address, no demo
    identities, a good signing key.

    The run goes through the configured dispatcher: with dispatcher = "celery" it is split into batches
    for `retain worker` processes and this command waits for them (dry runs, --out reports and
    --at-least-once runs always run here).
    """
    from campaigns.clock import reference_now
    from campaigns.definition import find_campaign
    from campaigns.dispatch import resolve_dispatcher
    from campaigns.factory import campaign_recommender
    from campaigns.golive import guard_send, overridden_text
    from campaigns.keys import check_key
    from campaigns.runner import RunRequest, default_run_key

    s = settings(ctx)
    check_key(s)
    store = open_store(ctx)
    definition = find_campaign(Path(s.templates_dir), campaign)
    if not definition.enabled and not dry_run:
        raise ConfigError(
            f"campaign {campaign!r} is disabled (enabled: false in {definition.path}): set enabled: true in its "
            f"front matter to send it (--dry-run works meanwhile)"
        )
    local = dry_run or out_path is not None or at_least_once
    dispatcher = resolve_dispatcher("local" if local else s)
    if allow_unsafe_send:
        s = s.with_overrides(allow_unsafe_send=True)
    overridden = [] if dry_run else guard_send(s, store, definition, sender or s.resolved_sender())
    recommender = campaign_recommender(definition, s, store) if dispatcher.loads_model else None
    if overridden:
        run_key = run_key or default_run_key(reference_now(s, store))
        record = store.start_run(definition.name, run_key, owner=None)
        store.mark_unsafe_send(record.id, overridden_text(overridden))
        err.print(
            "[yellow]warning:[/yellow] go-live checks overridden (--allow-unsafe-send), recorded on the run: "
            + escape(overridden_text(overridden))
        )
    request = RunRequest(
        definition, run_key=run_key, sender=sender, dry_run=dry_run, report_path=out_path,
        at_least_once=at_least_once,
    )  # fmt: skip
    if show_progress(as_json):
        with Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,} customers"),
            TimeElapsedColumn(), console=err, transient=True,
        ) as bar:  # fmt: skip
            task = bar.add_task(f"{'dry run' if dry_run else 'sending'} {escape(campaign)}", total=None)
            request = replace(request, progress=lambda n: bar.advance(task, n))
            summary = dispatcher.send(store, s, request, recommender=recommender)
    else:
        summary = dispatcher.send(store, s, request, recommender=recommender)
    if as_json:
        print_json(summary.to_json())
    else:
        print_summary(summary)
    if summary.status == RunStatus.PAUSED:
        raise typer.Exit(3)
    if summary.status == RunStatus.FAILED:
        raise typer.Exit(1)


def _run_row(store: Any, run: Any) -> dict[str, Any]:
    counts = store.run_counts(run.id)
    return {
        "campaign": run.campaign,
        "key": run.key,
        "status": run.status,
        "dispatcher": run.dispatcher,
        "started_at": run.started_at.isoformat(sep=" ", timespec="seconds"),
        "finished_at": run.finished_at.isoformat(sep=" ", timespec="seconds") if run.finished_at else None,
        "total": counts.total,
        "sent": counts.get(DeliveryStatus.SENT),
        "in_flight": counts.get(DeliveryStatus.SENDING) + counts.get(DeliveryStatus.CLAIMED),
        "holdout": counts.get(DeliveryStatus.HOLDOUT),
        "failed": counts.get(DeliveryStatus.FAILED),
        "unknown": counts.get(DeliveryStatus.UNKNOWN),
        "deferred": counts.get(DeliveryStatus.DEFERRED),
        "skipped": counts.skipped,
        "failures": counts.failed,
        "unknown_reasons": counts.unknown,
        "reason": run.reason,
        "unsafe_send": run.unsafe_send,
    }


@app.command("runs")
def runs_cmd(
    ctx: typer.Context,
    campaign: Annotated[str | None, typer.Option("--campaign", help="Only this campaign.")] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many recent runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Recent runs with their progress and outcome counts (local and Celery runs alike)."""
    store = open_store(ctx)
    rows = [_run_row(store, r) for r in store.list_runs(limit, campaign)]
    if as_json:
        print_json(rows)
        return
    if not rows:
        out.print("no runs yet: try `retain send CAMPAIGN --dry-run`")
        return
    t = Table(title="Runs", title_justify="left")
    for col in (
        "campaign",
        "key",
        "status",
        "started",
        "sent",
        "in flight",
        "holdout",
        "failed",
        "unknown",
        "deferred",
        "skipped",
    ):
        t.add_column(
            col,
            justify="right"
            if col in {"sent", "in flight", "holdout", "failed", "unknown", "deferred", "skipped"}
            else "left",
        )
    for r in rows:
        t.add_row(
            escape(r["campaign"]), escape(r["key"]), r["status"], r["started_at"], f"{r['sent']:,}", f"{r['in_flight']:,}",
            f"{r['holdout']:,}", f"{r['failed']:,}", f"{r['unknown']:,}", f"{r['deferred']:,}",
            f"{sum(r['skipped'].values()):,}",
        )  # fmt: skip
    out.print(t)


@run_app.command("show")
def run_show_cmd(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The run key (see `retain runs`).")],
    campaign: Annotated[
        str | None, typer.Option("--campaign", help="When several campaigns share the key.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Progress and outcome counts of one run, with skip and failure reasons."""
    store = open_store(ctx)
    try:
        run = store.get_run(key, campaign)
        row = _run_row(store, run)
        phase, decision = store.run_phase(run.id)
    finally:
        store.close()
    if phase is not None:  # an A/B test then winner run (campaigns/abtest.py)
        row["phase"], row["decision"] = phase, decision
    if as_json:
        print_json(row)
        return
    out.print(
        f"[bold]{escape(row['campaign'])}[/bold] run {escape(row['key'])}: {row['status']} (started {row['started_at']}, dispatcher {row['dispatcher']})"
    )
    for label in ("total", "sent", "in_flight", "holdout", "failed", "unknown", "deferred"):
        out.print(f"  {label.replace('_', ' '):<10} {row[label]:,}")
    sections = (
        ("skipped", row["skipped"]),
        ("failures", row["failures"]),
        ("unknown (handed over, no final reply; not re-sent)", row["unknown_reasons"]),
    )
    for title, data in sections:
        if data:
            out.print(f"  {title}:")
            for reason, n in sorted(data.items(), key=lambda kv: -kv[1]):
                out.print(f"    {escape(reason):<40} {n:,}")
    if row["reason"]:
        out.print(f"  note: {escape(row['reason'])}")
    if row["unsafe_send"]:
        out.print(
            f"  [yellow]sent with --allow-unsafe-send, overriding:[/yellow] {escape(row['unsafe_send'])}"
        )
    if phase is not None:
        out.print(f"  A/B phase: {escape(str(phase))}")
        for k, v in (decision or {}).items():
            if k != "probabilities":
                out.print(f"    {k:<16} {escape(str(v))}")
        if decision and decision.get("probabilities"):
            shown = ", ".join(f"{escape(str(n))} {p:.1%}" for n, p in decision["probabilities"].items())
            out.print(f"    {'probabilities':<16} {shown}")
