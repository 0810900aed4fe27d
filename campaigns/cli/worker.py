"""Scale-out commands: ``retain worker`` (a Celery worker sending batches of distributed runs)."""

from __future__ import annotations

from typing import Annotated

import typer

from campaigns.cli.app import app, err, settings
from campaigns.errors import ConfigError

POOLS = ("prefork", "solo")


@app.command("worker")
def worker_cmd(
    ctx: typer.Context,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", min=1, help="Worker processes (prefork pool).")
    ] = 2,
    queues: Annotated[
        str | None,
        typer.Option(
            "--queues", "-Q", help="Comma-separated broker queues to consume (default: celery_queue)."
        ),
    ] = None,
    pool: Annotated[
        str, typer.Option("--pool", help="prefork (one process per slot) or solo (this process only).")
    ] = "prefork",
    loglevel: Annotated[str, typer.Option("--loglevel", help="debug, info, warning or error.")] = "info",
) -> None:
    """Run a Celery worker that sends batches of runs started with dispatcher = "celery".

    The broker is the `broker_url` setting (RETAIN_BROKER_URL); the database, templates, model and
    sender are this machine's settings. Same as `celery -A campaigns.dispatch.celery worker`.
    """
    if pool not in POOLS:
        # threads/gevent would run several batches in one process; the batch lease assumes one per process
        raise ConfigError(f"--pool must be one of {', '.join(POOLS)}, got {pool!r}")
    s = settings(ctx)
    queues = queues or s.celery_queue
    from campaigns.dispatch.celery import app as celery_app
    from campaigns.dispatch.celery import configure_worker

    configure_worker(s)
    err.print(f"retain worker: broker {_masked(s.broker_url)}, queues {queues}, {pool} x {concurrency}")
    celery_app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            f"--queues={queues}",
            f"--pool={pool}",
            f"--loglevel={loglevel}",
        ]
    )


def _masked(url: str) -> str:
    from kombu.utils.url import maybe_sanitize_url

    return str(maybe_sanitize_url(url))
