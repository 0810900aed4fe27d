"""Send stage: Retain's SMTP sender vs serial smtplib on one connection, against a loopback sink in
another process (delay before every SMTP reply: 10 ms, then none).

    python -m bench send            # or: python bench/bench_send.py [N]

Prints messages/s, the ratio to the serial baseline measured in the same run, CPU seconds used by this
process and by the sink process (a sink near 1.0 CPU-s per wall-second is the bottleneck), and checks the
sink received every message exactly once.
"""

from __future__ import annotations

import os
import smtplib
import sys
import tempfile
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the test sink lives in tests/ (it is not part of the package)

from campaigns.config import Settings, set_thread_env  # noqa: E402
from campaigns.senders import OutgoingMessage, resolve_sender  # noqa: E402
from tests.smtp_sink import FaultPlan, SinkProcess, read_log  # noqa: E402

FROM = "hello@shop.example.com"


def sample_message(i: int) -> bytes:
    """A realistic rendered email: text + HTML alternative, ~12 KB on the wire."""
    msg = EmailMessage()
    msg["From"] = f"Retain Demo Shop <{FROM}>"
    msg["To"] = f"customer{i}@example.test"
    msg["Subject"] = "Picked for you: three things you might like"
    msg["Message-ID"] = f"<bench-{i}@shop.example.com>"
    msg["List-Unsubscribe"] = f"<https://shop.example.com/u/{i:08d}>"
    msg.set_content("Hello,\n\nHere are a few products picked for you.\n" * 20)
    row = '<tr><td style="padding:8px;font-family:Arial"><a href="https://shop.example.com/p/{n}?utm_source=retain">Product {n}</a> £{n}.99</td></tr>\n'
    html = "<html><body><table>" + "".join(row.format(n=n) for n in range(60)) + "</table></body></html>"
    msg.add_alternative(html, subtype="html")
    return msg.as_bytes(policy=SMTP)


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def serial_smtplib(port: int, messages: list[OutgoingMessage]) -> float:
    start = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for m in messages:
            smtp.sendmail(m.mail_from, [m.rcpt_to], m.data)
    return len(messages) / (time.perf_counter() - start)


def retain_sender(port: int, messages: list[OutgoingMessage], concurrency: int) -> tuple[float, int]:
    settings = Settings(send_concurrency=concurrency)
    ok = 0

    def count(result: object) -> None:
        nonlocal ok
        ok += bool(getattr(result, "ok", False))

    with resolve_sender(f"smtp://127.0.0.1:{port}?tls=none", settings) as sender:
        start = time.perf_counter()
        sender.send_batch(messages, count)
        rate = len(messages) / (time.perf_counter() - start)
    return rate, ok


def run_case(label: str, delay_ms: float, n: int, n_serial: int, concurrency: int, workers: int = 1) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "sink.log"
        with SinkProcess(log, FaultPlan(delay_ms=delay_ms), workers=workers) as sink:
            base = [
                OutgoingMessage(f"s{i}", FROM, f"serial{i}@example.test", sample_message(i))
                for i in range(n_serial)
            ]
            serial = serial_smtplib(sink.port, base)
            messages = [
                OutgoingMessage(f"k{i}", FROM, f"customer{i}@example.test", sample_message(i))
                for i in range(n)
            ]
            me = psutil.Process()
            sinks = [psutil.Process(p.pid) for p in sink.processes]
            cpu0, sink0, t0 = cpu_seconds(me), sum(map(cpu_seconds, sinks)), time.perf_counter()
            rate, ok = retain_sender(sink.port, messages, concurrency)
            wall = time.perf_counter() - t0
            cpu1, sink1 = cpu_seconds(me), sum(map(cpu_seconds, sinks))
            time.sleep(0.2)
            counts = read_log(log)
        exact = sum(1 for i in range(n) if counts[f"customer{i}@example.test"] == 1)
        print(
            f"{label}: retain smtp {rate:,.0f} msg/s (concurrency {concurrency}, {n} msgs, "
            f"{len(messages[0].data) / 1024:.1f} KB each) | serial smtplib {serial:,.1f} msg/s | "
            f"ratio {rate / serial:,.1f}x | CPU per wall-s: sender {(cpu1 - cpu0) / wall:.2f}, "
            f"sink x{workers} {(sink1 - sink0) / wall:.2f} | delivered exactly once: {exact}/{n} (ok={ok})",
            flush=True,
        )


def main() -> None:
    set_thread_env()
    n = int(os.environ.get("BENCH_SEND_N", "6000"))
    print(f"machine: {os.cpu_count()} cores (shared with other work; figures vary run to run)")
    run_case("sink delay 10 ms", 10.0, n, 50, 64)
    run_case("sink delay 10 ms", 10.0, n, 50, 64, workers=2)
    run_case("sink no delay   ", 0.0, n, 500, 64)
    run_case("sink no delay   ", 0.0, n, 500, 64, workers=2)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        os.environ["BENCH_SEND_N"] = sys.argv[1]
    main()
