"""``make demo``: the whole product on the bundled data, through the same commands a user runs.

1. a fresh SQLite database under ``var/`` (the previous demo database and outbox are removed);
2. ``retain import online-retail data/online_retail.csv.gz`` and ``retain stats``;
3. ``retain train`` and ``retain evaluate`` (every model beside both baselines), ``retain evaluate
   lifecycle`` (the lifecycle predictions beside RFM, recency and the drifting rule);
4. ``retain send`` for every starter campaign, to the local outbox (``var/outbox``, a Maildir).

The bundled data ends on 2011-12-09, so the repository's ``retain.toml`` sets
``as_of = "latest-order"``: segments and schedules see the shop as it was the day after.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from campaigns.cli import main as retain
from campaigns.config import load_settings, set_thread_env

DATA = Path("data/online_retail.csv.gz")
console = Console()


def step(title: str, *argv: str) -> None:
    console.print(Rule(f"[bold]{title}[/bold]  [dim]retain {' '.join(argv)}[/dim]", align="left"))
    started = time.perf_counter()
    status = retain(list(argv))
    if status != 0:
        console.print(f"[red]demo stopped: `retain {' '.join(argv)}` exited with {status}[/red]")
        sys.exit(status)
    console.print(f"[dim]({time.perf_counter() - started:.1f} s)[/dim]\n")


def main() -> None:
    set_thread_env()
    settings = load_settings()
    var = Path(settings.var_dir)
    db_url = settings.resolved_database_url()
    if db_url.startswith("sqlite:///"):
        db = Path(db_url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    outbox = var / "outbox"
    shutil.rmtree(outbox, ignore_errors=True)
    started = time.perf_counter()
    step("Import the bundled purchase history", "import", "online-retail", str(DATA))
    step("Retention KPIs", "stats")
    step("Train the recommender", "train")
    step("Does it beat the baselines? (temporal holdout, last 30 days)", "evaluate")
    step(
        "Lifecycle predictions against RFM, recency and the drifting rule (last 90 days)",
        "evaluate",
        "lifecycle",
    )
    step("Campaigns defined in templates/emails", "campaigns")
    from campaigns.definition import load_campaigns

    for definition in load_campaigns(Path(settings.templates_dir)):
        step(f"Send {definition.name} to the local outbox", "send", definition.name)
    step("Runs", "runs")
    n = len(list((outbox / "new").glob("*.eml"))) if (outbox / "new").exists() else 0
    console.print(Rule("[bold]Done[/bold]", align="left"))
    cmd = retain_command()
    console.print(
        f"{n:,} messages are in {outbox}/new (one .eml each; open one in a mail client or `less`).\n"
        f"Next: `{cmd} preview` to see any email for a real customer; `{cmd} send weekly-picks --dry-run`;\n"
        f"for your own shop: `{cmd} init ../my-shop` (its own settings; the demo's stay with the demo).\n"
        f"Total {time.perf_counter() - started:.0f} s."
    )


def retain_command() -> str:
    """How to type the `retain` command here: `retain` when it is on PATH, else the virtualenv's script
    (after `make demo` it is .venv/bin/retain, which a shell does not find by itself)."""
    found = shutil.which("retain")
    script = Path(sys.executable).parent / "retain"
    if found and Path(found).resolve() == script.resolve():
        return "retain"
    if script.exists():
        try:
            return str(script.relative_to(Path.cwd()))
        except ValueError:
            return str(script)
    return "retain"


if __name__ == "__main__":
    main()
