"""A fault-injecting SMTP sink on loopback (aiosmtpd), for tests and benchmarks (not part of the package:
aiosmtpd is a dev dependency).

It accepts mail on 127.0.0.1, counts what it accepted per recipient, and misbehaves on demand
(:class:`FaultPlan`): a delay before every reply, random 421/451 replies, 550 for recipients containing a
substring, connections dropped after the message data arrived but before the reply (or earlier, at RCPT),
a message stored but its final reply held back for seconds (the client's timeout then expires after the
payload was sent), deterministic "fail the first N tries" modes, or rejecting everything.

Counting is robust to a killed client: every accepted message is one line appended (``O_APPEND``, one
``write``) to ``log_path``: ``recipient<TAB>message-id<TAB>unix-time``. :func:`read_log` counts it. A dropped
or refused message is never logged, so the log holds exactly what a real server would have accepted.

In-process::

    with SmtpSink(FaultPlan(delay_ms=10, bounce_substring="bounce")) as sink:
        sender = resolve_sender(sink.dsn, settings)
        ...
        assert sink.counts["ann@example.test"] == 1

Out of process (benchmarks, SIGKILL trials), from the project root: ``python -m tests.smtp_sink --port 0
--log sink.log --delay-ms 10 --tempfail-rate 0.05`` prints ``READY <port>`` once listening and runs until
SIGTERM; :class:`SinkProcess` wraps that (``workers=N`` processes share the port with SO_REUSEPORT).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

_DROP = "999 drop"  # internal marker: close the connection instead of replying
ROOT = Path(__file__).resolve().parent.parent  # the project root: ``python -m tests.smtp_sink`` runs there
DROP_STAGES = ("data", "rcpt")
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


@dataclass
class FaultPlan:
    """What the sink does wrong, and how slowly.

    Rates are probabilities per command (MAIL, RCPT, end of DATA); ``tempfail_first`` / ``drop_first``
    fail the first N RCPT / DATA attempts *for each recipient* (deterministic, for tests); ``reject_all``
    answers every MAIL FROM with that code (e.g. 421 or 554).

    ``drop_at`` is where ``drop_rate`` / ``drop_first`` drop the connection: ``"data"`` (the message data
    arrived, the reply never comes; the message is not stored) or ``"rcpt"`` (on RCPT TO, before any
    message data). ``slow_reply_s`` stores the message, then waits that many seconds before the final reply
    after DATA — for the first ``slow_reply_first`` messages per recipient, or every message when 0.
    """

    delay_ms: float = 0.0
    tempfail_rate: float = 0.0
    drop_rate: float = 0.0
    bounce_substring: str = ""
    tempfail_first: int = 0
    drop_first: int = 0
    reject_all: int = 0
    seed: int | None = None
    drop_at: str = "data"
    slow_reply_s: float = 0.0
    slow_reply_first: int = 0

    def __post_init__(self) -> None:
        if self.drop_at not in DROP_STAGES:
            raise ValueError(f"drop_at={self.drop_at!r}: expected one of {', '.join(DROP_STAGES)}")


@dataclass
class SinkStats:
    """What the sink saw (in-process only; out of process, read the log)."""

    counts: Counter[str] = field(default_factory=Counter)  # accepted messages per recipient
    faults: Counter[str] = field(default_factory=Counter)  # tempfail / drop / bounce / reject / slow_reply
    messages: list[tuple[str, str, bytes]] = field(default_factory=list)  # (mail_from, rcpt, data)
    times: list[float] = field(default_factory=list)  # monotonic time of each acceptance


class FaultHandler:
    """aiosmtpd handler that applies a :class:`FaultPlan` and records accepted messages."""

    def __init__(
        self, plan: FaultPlan, log_path: str | os.PathLike[str] | None = None, keep_messages: bool = True
    ):
        self.plan = plan
        self.stats = SinkStats()
        self.keep_messages = keep_messages
        self._random = random.Random(plan.seed)
        self._rcpt_tries: Counter[str] = Counter()
        self._rcpt_drops: Counter[str] = Counter()
        self._data_tries: Counter[str] = Counter()
        self._lock = threading.Lock()  # stats are read from other threads
        self._log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if log_path else None

    def close(self) -> None:
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None

    def _tempfail(self, kind: str) -> str | None:
        if self.plan.tempfail_rate and self._random.random() < self.plan.tempfail_rate:
            self.stats.faults["tempfail"] += 1
            if self._random.random() < 0.5:
                return "421 4.3.2 Service shutting down (injected)"
            return f"451 4.3.0 Temporary failure at {kind} (injected)"
        return None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.plan.reject_all:
            self.stats.faults["reject"] += 1
            return f"{self.plan.reject_all} {'4.3.0' if self.plan.reject_all < 500 else '5.7.1'} Rejected (injected)"
        if failure := self._tempfail("MAIL"):
            return failure
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    def _drop(self, tries: int) -> bool:
        plan = self.plan
        if tries <= plan.drop_first or (plan.drop_rate and self._random.random() < plan.drop_rate):
            self.stats.faults["drop"] += 1
            return True
        return False

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.plan.bounce_substring and self.plan.bounce_substring in address.lower():
            self.stats.faults["bounce"] += 1
            return "550 5.1.1 No such user (injected)"
        if self.plan.drop_at == "rcpt":
            self._rcpt_drops[address] += 1
            if self._drop(self._rcpt_drops[address]):
                return _DROP
        self._rcpt_tries[address] += 1
        if self._rcpt_tries[address] <= self.plan.tempfail_first:
            self.stats.faults["tempfail"] += 1
            return "451 4.3.0 Try again later (injected)"
        if failure := self._tempfail("RCPT"):
            return failure
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        first = envelope.rcpt_tos[0] if envelope.rcpt_tos else ""
        self._data_tries[first] += 1
        if self.plan.drop_at == "data" and self._drop(self._data_tries[first]):
            return _DROP
        if failure := self._tempfail("DATA"):
            return failure
        data: bytes = envelope.original_content or b""
        found = _MESSAGE_ID.search(data)
        message_id = found.group(1).decode("ascii", "replace") if found else "-"
        now = time.time()
        lines = []
        with self._lock:
            for rcpt in envelope.rcpt_tos:
                self.stats.counts[rcpt] += 1
                self.stats.times.append(time.monotonic())
                if self.keep_messages:
                    self.stats.messages.append((envelope.mail_from or "", rcpt, data))
                lines.append(f"{_clean(rcpt)}\t{_clean(message_id)}\t{now:.3f}\n")
        if self._log_fd is not None:
            os.write(self._log_fd, "".join(lines).encode("utf-8", "replace"))
        plan = self.plan
        if plan.slow_reply_s and (
            not plan.slow_reply_first or self._data_tries[first] <= plan.slow_reply_first
        ):
            self.stats.faults["slow_reply"] += 1
            await asyncio.sleep(plan.slow_reply_s)  # stored already: the client may give up waiting
        return "250 2.0.0 OK queued"


def _clean(text: str) -> str:
    return re.sub(r"\s", "_", text)


class _FaultSMTP(SMTP):
    """aiosmtpd's SMTP session with a delay before every reply, connection drops, and 421 closing the line."""

    def __init__(self, handler: FaultHandler, delay: float, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._reply_delay = delay

    async def smtp_DATA(self, arg: str) -> None:
        # aiosmtpd reads DATA one line per await (~1 ms of CPU for a 10 KB email), which made the sink the
        # bottleneck of the send benchmark; this reads the message in one call, then undoes dot-stuffing
        # (RFC 5321 4.5.2). Same checks and replies as aiosmtpd's smtp_DATA otherwise.
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        reader = self._reader
        line_limit = reader._limit  # type: ignore[attr-defined]  # private: aiosmtpd caps the reader at one line
        reader._limit = self.data_size_limit or 2**31  # type: ignore[attr-defined]  # widen it for the body
        try:
            raw = await reader.readuntil(b"\r\n.\r\n")
        except asyncio.LimitOverrunError:
            await self.push("552 Error: Too much mail data")
            if self.transport is not None:
                self.transport.close()
            return
        finally:
            reader._limit = line_limit  # type: ignore[attr-defined]
        body = raw[:-3]
        if body.startswith(b".."):
            body = body[1:]
        body = body.replace(b"\r\n..", b"\r\n.")
        self.envelope.content = self.envelope.original_content = body
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)

    async def push(self, status: AnyStr) -> None:
        if self._reply_delay:
            await asyncio.sleep(self._reply_delay)
        text = status if isinstance(status, str) else status.decode("ascii", "replace")
        if text == _DROP:
            if isinstance(self.transport, asyncio.WriteTransport):
                self.transport.abort()
            return
        await super().push(status)
        if text.startswith("421") and self.transport is not None:
            self.transport.close()


def _authenticator(user: str, password: str) -> Any:
    def check(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login == user.encode()
            and data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False)

    return check


async def start_server(
    handler: FaultHandler,
    port: int = 0,
    reuse_port: bool = False,
    auth: tuple[str, str] | None = None,
    tls_context: ssl.SSLContext | None = None,
) -> asyncio.AbstractServer:
    """Listen on 127.0.0.1:``port`` in the running loop (port 0 = a free one); ``tls_context`` offers
    STARTTLS with that (server) context."""
    loop = asyncio.get_running_loop()
    delay = handler.plan.delay_ms / 1000.0
    extra: dict[str, Any] = {}
    if auth:
        extra = {"authenticator": _authenticator(*auth), "auth_required": True, "auth_require_tls": False}
    if tls_context is not None:
        extra["tls_context"] = tls_context

    def factory() -> SMTP:
        with warnings.catch_warnings():
            # AUTH without TLS is what a loopback test sink wants; aiosmtpd warns about it on every connection
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
            return _FaultSMTP(handler, delay, hostname="sink.retain.test", loop=loop, **extra)

    return await loop.create_server(factory, "127.0.0.1", port, reuse_port=reuse_port or None)


class SmtpSink:
    """The sink in a background thread of this process; a context manager. See the module docstring."""

    def __init__(
        self,
        plan: FaultPlan | None = None,
        *,
        port: int = 0,
        log_path: str | os.PathLike[str] | None = None,
        keep_messages: bool = True,
        auth: tuple[str, str] | None = None,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = FaultHandler(plan or FaultPlan(), log_path, keep_messages)
        self.host = "127.0.0.1"
        self.port = port
        self._auth = auth
        self._tls_context = tls_context
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None

    @property
    def plan(self) -> FaultPlan:
        return self.handler.plan

    @property
    def counts(self) -> Counter[str]:
        """Accepted messages per recipient (a copy)."""
        with self.handler._lock:
            return Counter(self.handler.stats.counts)

    @property
    def stats(self) -> SinkStats:
        return self.handler.stats

    @property
    def dsn(self) -> str:
        """An ``smtp://`` DSN reaching this sink (no TLS)."""
        return f"smtp://127.0.0.1:{self.port}?tls=none"

    def start(self) -> SmtpSink:
        self._thread = threading.Thread(target=self._loop.run_forever, name="smtp-sink", daemon=True)
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_server(self.handler, self.port, auth=self._auth, tls_context=self._tls_context), self._loop
        )
        self._server = future.result(timeout=10)
        assert isinstance(self._server, asyncio.Server)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._thread is None:
            return

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            await asyncio.sleep(0)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._thread = None
        self.handler.close()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_log(path: str | os.PathLike[str]) -> Counter[str]:
    """Accepted messages per recipient, from a sink's log file (missing file = nothing accepted)."""
    counts: Counter[str] = Counter()
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.endswith("\n"):
                    counts[line.split("\t", 1)[0]] += 1
    except FileNotFoundError:
        pass
    return counts


class SinkProcess:
    """The sink as separate process(es): ``start()``, ``port``, ``dsn``, ``counts()`` (from the log), ``stop()``."""

    def __init__(
        self, log_path: str | os.PathLike[str], plan: FaultPlan | None = None, workers: int = 1
    ) -> None:
        self.log_path = Path(log_path).resolve()  # the sink runs in the project root
        self.plan = plan or FaultPlan()
        self.workers = workers
        self.port = 0
        self.processes: list[subprocess.Popen[str]] = []

    @property
    def dsn(self) -> str:
        return f"smtp://127.0.0.1:{self.port}?tls=none"

    def _args(self, port: int, index: int) -> list[str]:
        p = self.plan
        args = [sys.executable, "-m", "tests.smtp_sink", "--port", str(port), "--log", str(self.log_path)]
        args += ["--delay-ms", str(p.delay_ms), "--tempfail-rate", str(p.tempfail_rate)]
        args += ["--drop-rate", str(p.drop_rate), "--bounce", p.bounce_substring]
        args += ["--tempfail-first", str(p.tempfail_first), "--drop-first", str(p.drop_first)]
        args += ["--reject-all", str(p.reject_all), "--drop-at", p.drop_at]
        args += ["--slow-reply", str(p.slow_reply_s), "--slow-reply-first", str(p.slow_reply_first)]
        if p.seed is not None:
            args += ["--seed", str(p.seed + index)]
        if self.workers > 1:
            args.append("--reuse-port")
        return args

    def start(self, timeout: float = 20.0) -> SinkProcess:
        for index in range(self.workers):
            proc = subprocess.Popen(self._args(self.port, index), stdout=subprocess.PIPE, text=True, cwd=ROOT)
            self.processes.append(proc)
            assert proc.stdout is not None
            line = proc.stdout.readline()  # "READY <port>"
            if not line.startswith("READY "):
                self.stop()
                raise RuntimeError(f"the SMTP sink did not start (said {line!r})")
            self.port = int(line.split()[1])
        return self

    def counts(self) -> Counter[str]:
        return read_log(self.log_path)

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.processes:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self.processes = []

    def __enter__(self) -> SinkProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.smtp_sink", description="A fault-injecting SMTP sink on 127.0.0.1 (aiosmtpd)."
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = a free one)")
    parser.add_argument("--log", help="append one line per accepted message here")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="delay before every reply")
    parser.add_argument("--tempfail-rate", type=float, default=0.0, help="chance of 421/451 per command")
    parser.add_argument(
        "--drop-rate", type=float, default=0.0, help="chance of dropping the connection at DATA"
    )
    parser.add_argument("--bounce", default="", help="550 for recipients containing this text")
    parser.add_argument(
        "--tempfail-first", type=int, default=0, help="451 for the first N RCPT per recipient"
    )
    parser.add_argument("--drop-first", type=int, default=0, help="drop the first N DATA per recipient")
    parser.add_argument("--reject-all", type=int, default=0, help="answer every MAIL FROM with this code")
    parser.add_argument(
        "--drop-at", choices=DROP_STAGES, default="data", help="where --drop-rate / --drop-first drop"
    )
    parser.add_argument(
        "--slow-reply",
        type=float,
        default=0.0,
        help="store the message, then wait S seconds before the reply",
    )
    parser.add_argument(
        "--slow-reply-first", type=int, default=0, help="slow replies for the first N per recipient (0 = all)"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--reuse-port", action="store_true", help="share the port with other sink processes")
    args = parser.parse_args(argv)
    plan = FaultPlan(
        delay_ms=args.delay_ms,
        tempfail_rate=args.tempfail_rate,
        drop_rate=args.drop_rate,
        bounce_substring=args.bounce.lower(),
        tempfail_first=args.tempfail_first,
        drop_first=args.drop_first,
        reject_all=args.reject_all,
        seed=args.seed,
        drop_at=args.drop_at,
        slow_reply_s=args.slow_reply,
        slow_reply_first=args.slow_reply_first,
    )
    handler = FaultHandler(plan, args.log, keep_messages=False)

    async def serve() -> None:
        server = await start_server(handler, args.port, reuse_port=args.reuse_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        assert isinstance(server, asyncio.Server)
        print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
        await stop.wait()
        server.close()

    asyncio.run(serve())
    handler.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
