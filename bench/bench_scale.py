"""Scale-out benchmark: one campaign end to end on PostgreSQL, local dispatcher vs 2 Celery workers.

N synthetic customers (``--customers``, default 20,000; ``--customers 1000000`` for the full run) in a
fresh PostgreSQL schema, a trained model, the real ``weekly-picks`` campaign, and the loopback SMTP sink
with a 10 ms delay before every reply. Both runs are ``retain send`` processes (the Celery one also starts
2 ``celery -A campaigns.dispatch.celery worker --pool solo`` processes on Redis); reported: wall time,
messages/s, peak RSS of every process, database size, and a linear projection to 1M.

    python -m bench scale [--customers N] [--broker redis://127.0.0.1:6379/4]

The machine has 2 cores shared with other engineers: absolute figures move with their load; the
local/Celery ratio is measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from campaigns.config import Settings, postgres_test_url  # noqa: E402
from campaigns.store import Store  # noqa: E402
from campaigns.training import train_model  # noqa: E402
from tests.smtp_sink import FaultPlan, SinkProcess  # noqa: E402
from tests.synthetic import cli_env, make_shop, shop_settings  # noqa: E402

RETAIN = [sys.executable, "-c", "from campaigns.cli import run; run()"]


class RssWatch:
    """Peak RSS per process (polled every second) for a set of processes and their children.

    Children are listed once per process and then every 10 s (``Process.children`` reads every
    process's stat file): the watch must not cost the run it measures a noticeable share of a core.
    """

    def __init__(self) -> None:
        self.peaks: dict[str, float] = {}
        self._procs: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def watch(self, label: str, pid: int) -> None:
        self._procs[label] = pid

    def _poll(self) -> None:
        procs: dict[int, psutil.Process] = {}
        kids: dict[int, tuple[float, list[psutil.Process]]] = {}
        while not self._stop.is_set():
            for label, pid in list(self._procs.items()):
                try:
                    proc = procs.get(pid) or procs.setdefault(pid, psutil.Process(pid))
                    listed, children = kids.get(pid, (0.0, []))
                    if time.monotonic() - listed > 10:
                        children = proc.children(recursive=True)
                        kids[pid] = (time.monotonic(), children)
                    rss = proc.memory_info().rss
                    for c in children:
                        try:
                            rss += c.memory_info().rss
                        except psutil.Error:
                            pass
                except psutil.Error:
                    continue
                self.peaks[label] = max(self.peaks.get(label, 0.0), rss / 2**20)
            self._stop.wait(1.0)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        return self.peaks


def env_for(settings: Settings, tmp: Path) -> dict[str, str]:
    """The child processes' environment: every setting as RETAIN_*, and an empty retain.toml."""
    return cli_env(settings, tmp)


def send(
    settings: Settings, tmp: Path, key: str, watch: RssWatch, label: str
) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [*RETAIN, "send", "weekly-picks", "--run-key", key, "--json"],
        env=env_for(settings, tmp), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    watch.watch(label, proc.pid)
    out, errors = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"retain send failed ({proc.returncode}): {errors.strip()[-1000:]}")
    return json.loads(out), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench_scale")
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/4")
    parser.add_argument("--skip-local", action="store_true", help="only the Celery run (for the 1M run)")
    args, _ = parser.parse_known_args(sys.argv[1:])
    schema = "bench_" + uuid.uuid4().hex[:8]
    admin = create_engine(postgres_test_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{postgres_test_url()}?options=-csearch_path%3D{schema}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    sink = SinkProcess(tmp / "sink.log", FaultPlan(delay_ms=10), workers=2).start()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        settings = shop_settings(
            tmp, database_url=url, sender=sink.dsn, batch_size=500, broker_url=args.broker
        )
        store = Store.open(url)
        t = time.perf_counter()
        make_shop(store, customers=args.customers)
        setup = time.perf_counter() - t
        train_model(store, settings)
        print(f"{args.customers:,} customers in PostgreSQL ({setup:.1f} s to write); sink delay 10 ms; "
              "2 shared cores (other engineers' jobs run too)")  # fmt: skip
        watch = RssWatch()
        if args.skip_local:
            local, local_s = {"sent": 0, "status": "not run"}, float("nan")
        else:
            local, local_s = send(settings, tmp, "local", watch, "retain send (local)")
        celery_settings = settings.with_overrides(dispatcher="celery")
        queue = "bench" + uuid.uuid4().hex[:6]
        env = env_for(celery_settings, tmp)
        for i in range(2):
            log = open(tmp / f"w{i}.log", "wb")  # noqa: SIM115 - the process owns it
            w = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "campaigns.dispatch.celery", "worker", "--pool", "solo",
                 "-Q", queue, "-n", f"w{i}@%h", "--without-gossip", "--without-mingle", "--loglevel", "warning"],
                env=env, cwd=ROOT, stdout=log, stderr=log,
            )  # fmt: skip
            workers.append(w)
            watch.watch(f"celery worker {i + 1}", w.pid)
        time.sleep(3)  # workers connect before the clock starts
        # the enqueuer must use the bench queue: run it in-process for that one option
        from campaigns.definition import find_campaign
        from campaigns.dispatch.celery import CeleryDispatcher

        watch.watch("bench process (shop, model, enqueuer)", os.getpid())
        t = time.perf_counter()
        from campaigns.runner import RunRequest

        definition = find_campaign(Path(settings.templates_dir), "weekly-picks")
        summary = CeleryDispatcher(queue=queue, poll_seconds=0.5).send(
            store, celery_settings, RunRequest(definition, run_key="celery")
        )
        celery_s = time.perf_counter() - t
        peaks = watch.stop()
        with admin.connect() as conn:
            size = conn.execute(
                text("SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n "
                     "ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind = 'r'"), {"s": schema},
            ).scalar()  # fmt: skip
        n_local, n_celery = local["sent"], summary.sent
        rate_l, rate_c = n_local / local_s, n_celery / celery_s
        print(
            f"local dispatcher : {n_local:,} sent in {local_s:6.1f} s = {rate_l:7.0f} msg/s ({local['status']})"
        )
        print(
            f"2 Celery workers : {n_celery:,} sent in {celery_s:6.1f} s = {rate_c:7.0f} msg/s ({summary.status})"
        )
        if not args.skip_local:
            print(f"celery / local throughput ratio: {rate_c / rate_l:.2f}x")
        for label, mb in sorted(peaks.items()):
            print(f"  peak RSS {label:<26} {mb:7.0f} MiB")
        print(f"database size (schema, 2 runs): {int(size or 0) / 2**20:.0f} MiB "
              f"({int(size or 0) / args.customers / 1024:.1f} KiB per customer)")  # fmt: skip
        for label, n, rate in (("local", n_local, rate_l), ("2 Celery workers", n_celery, rate_c)):
            if not n:
                continue
            minutes = 1_000_000 * (n / args.customers) / rate / 60
            print(
                f"projected 1M customers ({label}): {minutes:.1f} min of sending (linear; docs/scale-out.md)"
            )
        store.close()
    finally:
        for w in workers:
            w.terminate()
            w.wait(timeout=30)
        sink.stop()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


if __name__ == "__main__":
    main()
