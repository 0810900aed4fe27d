"""End to end: synthetic customers in SQLite, one campaign through the whole pipeline
(segment -> recommend -> render -> ledger -> send) to a loopback SMTP sink that delays every reply.

The send runs as a real ``retain send`` process, so its wall time and peak RSS are the product's own.
Baseline measured in the same run: the same number of messages pushed by serial ``smtplib`` over one
connection to the same sink (no segment, no rendering, no ledger) — what "just sending" costs.
Goal (issue #5): 100k customers <= 3 min and <= 1 GB; the 1M figure is projected from the measured rate.

    python -m bench pipeline                 # 100,000 customers
    python bench/bench_pipeline.py --customers 20000 --delay-ms 10
"""

from __future__ import annotations

import argparse
import json
import resource
import smtplib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from campaigns.store import Store  # noqa: E402
from campaigns.training import train_model  # noqa: E402
from tests.smtp_sink import FaultPlan, SinkProcess  # noqa: E402
from tests.synthetic import cli_env, make_shop, shop_settings  # noqa: E402


def _serial_baseline(dsn_port: int, n: int) -> float:
    body = b"Subject: x\r\nFrom: a@example.com\r\nTo: b@example.com\r\n\r\n" + b"x" * 8000 + b"\r\n"
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", dsn_port) as smtp:
        for i in range(n):
            smtp.sendmail("a@example.com", [f"serial{i}@example.com"], body)
    return n / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--delay-ms", type=float, default=10.0)
    args = ap.parse_args(argv if argv is not None else [])
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        db_url = f"sqlite:///{tmp / 'bench.db'}"
        settings = shop_settings(tmp, batch_size=1000)
        store = Store.open(db_url)
        t = time.perf_counter()
        make_shop(store, customers=args.customers, products=2000, seed=5)
        setup = time.perf_counter() - t
        t = time.perf_counter()
        train_model(store, settings)
        train = time.perf_counter() - t
        env = cli_env(settings.with_overrides(database_url=db_url), tmp)
        with SinkProcess(tmp / "sink.log", FaultPlan(delay_ms=args.delay_ms)) as sink:
            t = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-c", "from campaigns.cli import run; run()", "send", "weekly-picks", "--run-key",
                 "bench", "--sender", sink.dsn, "--json"],
                cwd=ROOT, env=env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            wall = time.perf_counter() - t
            rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            received = sum(sink.counts().values())
            serial = _serial_baseline(sink.port, 200)
        summary = json.loads(out.stdout)
        db_mb = (tmp / "bench.db").stat().st_size / 1e6
    rate = summary["sent"] / wall
    print(f"customers {args.customers:,}; sink delay {args.delay_ms:g} ms per SMTP reply; SQLite")
    print(f"setup (write shop) {setup:.1f} s, train {train:.1f} s, database {db_mb:.0f} MB")
    print(
        f"retain send: {summary['sent']:,} sent + {summary['holdout']:,} holdout in {wall:.1f} s "
        f"= {rate:,.0f} msg/s end to end; peak RSS {rss_mb:.0f} MB; sink received {received:,}"
    )
    print(
        f"serial smtplib (one connection, same sink, no pipeline): {serial:,.0f} msg/s "
        f"-> ratio {rate / serial:.1f}x"
    )
    print(f"projection to 1,000,000 customers at this rate: {1_000_000 * wall / args.customers / 60:.1f} min")
    print(
        f"goal <= 180 s and <= 1024 MB for 100k -> "
        f"{'met' if wall * 100_000 / args.customers <= 180 and rss_mb <= 1024 else 'NOT met'} (scaled to 100k)"
    )


if __name__ == "__main__":
    main(sys.argv[1:])
