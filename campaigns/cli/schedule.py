"""Scheduler commands: ``retain schedule sync|list|run`` (docs/scheduling.md)."""

from __future__ import annotations

import logging
from typing import Annotated

import click
import typer
from rich.markup import escape
from rich.table import Table

from campaigns.cli.app import app, err, open_store, out, print_json, settings
from campaigns.errors import ConfigError, SchedulerError

schedule_app = typer.Typer(
    help="Scheduled sends: sync the jobs, list them, run the scheduler.", no_args_is_help=True
)
app.add_typer(schedule_app, name="schedule")

_STYLE = {"+": "green", "~": "yellow", "-": "red", "!": "red"}


@schedule_app.command("sync")
def schedule_sync(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the diff without changing the job store.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the diff as JSON.")] = False,
) -> None:
    """Reconcile the job store with the template files and print what was added, changed and removed.

    Exits 1 when a template is invalid (the other campaigns are still synced), and when another
    ``schedule sync`` is running (nothing applied). A killed sync's lock is taken over at once.
    """
    from campaigns.leases import new_owner
    from campaigns.scheduling.lock import SchedulerLock
    from campaigns.scheduling.service import open_scheduler
    from campaigns.scheduling.sync import sync_jobs

    s = settings(ctx)
    store = open_store(ctx)
    lock = SchedulerLock(store, "sync:" + new_owner())
    apply = not dry_run
    running = None
    try:
        if apply:
            try:
                lock.acquire()
            except SchedulerError as exc:
                apply, running = False, str(exc)
        with open_scheduler(store, s) as scheduler:
            report = sync_jobs(scheduler, store, s, apply=apply)
    finally:
        lock.release()
        store.close()
    busy_sync = running is not None and "(sync:" in running
    if running:
        report.notes.append(
            "not applied: a scheduler is running and re-syncs from the templates every 5 minutes "
            f"({running.split(';')[0]})"
        )
    if as_json:
        print_json(report.to_json())
    else:
        for line in report.lines():
            style = _STYLE.get(line[:1])
            out.print(f"[{style}]{escape(line)}[/{style}]" if style else escape(line))
    if report.problems:
        raise click.exceptions.Exit(1)
    if busy_sync:
        # the job store may be half-way through the other sync: say so, do not report success
        err.print(
            "[red]error:[/red] another `retain schedule sync` is running; nothing applied, run it again after"
        )
        raise click.exceptions.Exit(1)


@schedule_app.command("list")
def schedule_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the jobs as JSON.")] = False,
) -> None:
    """Every scheduled job with its next fire time (local to the job's zone, and UTC)."""
    from datetime import UTC

    from campaigns.scheduling.service import list_jobs, open_scheduler

    s = settings(ctx)
    store = open_store(ctx)
    try:
        with open_scheduler(store, s) as scheduler:
            rows = list_jobs(scheduler)
    finally:
        store.close()
    if as_json:
        print_json(
            [
                {
                    "id": r.id,
                    "name": r.name,
                    "next_run_time": r.next_run_time.isoformat() if r.next_run_time else None,
                }
                for r in rows
            ]
        )
        return
    if not rows:
        out.print("no scheduled jobs: run `retain schedule sync`")
        return
    table = Table("job", "next fire (local)", "next fire (UTC)", "schedule", box=None, pad_edge=False)
    for r in rows:
        t = r.next_run_time
        local = f"{t:%a %Y-%m-%d %H:%M %Z}" if t else "paused/done"
        utc = f"{t.astimezone(UTC):%Y-%m-%d %H:%M}" if t else ""
        table.add_row(escape(r.id), local, utc, escape(r.name))
    out.print(table)


@schedule_app.command("run")
def schedule_run(ctx: typer.Context) -> None:
    """Run the scheduler in the foreground (Ctrl-C or SIGTERM stops it cleanly; runs stay resumable).

    With a real transport it refuses to start while a go-live must fails (`retain doctor`), unless
    allow_unsafe_send is set (RETAIN_ALLOW_UNSAFE_SEND=1)."""
    from campaigns.golive import checklist, failed_musts, is_real_transport
    from campaigns.scheduling.service import run_forever

    s = settings(ctx)
    if is_real_transport(s.resolved_sender()) and not s.allow_unsafe_send:
        store = open_store(ctx)
        missing = failed_musts(checklist(s, store))
        if missing:
            lines = "\n".join(f"  - {c.name}: {c.detail}" for c in missing)
            raise ConfigError(
                f"refusing to start the scheduler with a real sender: fix these first\n{lines}\n"
                f"`retain doctor` shows the whole checklist; RETAIN_ALLOW_UNSAFE_SEND=1 overrides it for a test server"
            )

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def show(report: object) -> None:
        for line in report.lines():  # type: ignore[attr-defined]
            err.print(escape(line))

    def ready(_scheduler: object) -> None:
        err.print("scheduler running; Ctrl-C to stop")

    run_forever(settings(ctx), on_sync=show, on_ready=ready)
