"""The shared delivery policy through a second transport: the small HTTP-API sender in tests/http_sender.py
posting to a real HTTP server on loopback (http.server, port 0), no mocks. Concurrency, the rate limit,
retries with backoff, giving up, the pause and the result statuses, as tests/test_smtp_sender.py checks
them through SMTP; plus the policy's own pieces (settings, DSN options, backoff bounds)."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from campaigns.config import Settings
from campaigns.definition import find_campaign
from campaigns.errors import ConfigError, SenderPausedError
from campaigns.runner import run_campaign
from campaigns.senders import (
    DeliveryPolicy,
    OutgoingMessage,
    Sender,
    SendResult,
    SendStatus,
    parse_dsn,
    resolve_sender,
)
from campaigns.senders.console import ConsoleSender
from campaigns.senders.memory import MemorySender
from campaigns.senders.outbox import OutboxSender
from campaigns.senders.smtp import SmtpSender
from campaigns.training import load_recommender, train_model

from .http_sender import HttpApiSender
from .synthetic import make_shop, shop_settings

TOKEN = "api-token-s3cret"
FAST = DeliveryPolicy(backoff=0.01, backoff_max=0.05)


# -- a loopback HTTP mail API with fault injection --------------------------------------------------------


@dataclass
class ApiPlan:
    """What the API does wrong: ``tempfail_first`` 503s per recipient, ``reject_all`` one status for every
    request, hard bounces / complaints for recipients containing a substring, ``slow_reply_s`` (store the
    message, then hold the reply), and ``barrier`` (hold each request until that many are in flight)."""

    tempfail_first: int = 0
    reject_all: int = 0
    bounce_substring: str = ""
    complaint_substring: str = ""
    slow_reply_s: float = 0.0
    barrier: int = 0


@dataclass
class ApiState:
    plan: ApiPlan
    accepted: Counter[str] = field(default_factory=Counter)
    tries: Counter[str] = field(default_factory=Counter)
    arrivals: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    times: list[float] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)
    barrier: threading.Barrier | None = None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs
    server: _ApiServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        state = self.server.state
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with state.lock:
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            status, payload = self._handle(state, body)
        finally:
            with state.lock:
                state.in_flight -= 1
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, state: ApiState, body: bytes) -> tuple[int, dict[str, str]]:
        plan = state.plan
        if self.path != "/messages":
            return 404, {"error": "not_found"}
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return 401, {"error": "bad_token"}
        message = json.loads(body)
        rcpt = message["to"]
        with state.lock:
            state.tries[rcpt] += 1
            state.arrivals[rcpt].append(time.monotonic())
            tries = state.tries[rcpt]
        if state.barrier is not None:
            state.barrier.wait()
        if plan.reject_all:
            return plan.reject_all, {"error": "rejected"}
        if plan.complaint_substring and plan.complaint_substring in rcpt:
            return 422, {"error": "complaint"}
        if plan.bounce_substring and plan.bounce_substring in rcpt:
            return 422, {"error": "hard_bounce"}
        if tries <= plan.tempfail_first:
            return 503, {"error": "busy"}
        base64.b64decode(message["raw"], validate=True)  # a malformed body fails the request
        with state.lock:
            state.accepted[rcpt] += 1
            state.times.append(time.monotonic())
        if plan.slow_reply_s:
            state.release.wait(plan.slow_reply_s)  # stored already: the client may give up waiting
        return 200, {"id": f"msg-{rcpt}"}


class _ApiServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 resets connections when 64 workers connect at once

    def __init__(self, plan: ApiPlan) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = ApiState(plan)
        if plan.barrier:
            self.state.barrier = threading.Barrier(plan.barrier, timeout=20)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


@pytest.fixture
def api() -> Iterator[Any]:
    started: list[_ApiServer] = []

    def make(plan: ApiPlan | None = None) -> _ApiServer:
        server = _ApiServer(plan or ApiPlan())
        threading.Thread(target=server.serve_forever, name="http-api", daemon=True).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.state.release.set()
        server.shutdown()
        server.server_close()


def message(i: int, rcpt: str | None = None) -> OutgoingMessage:
    rcpt = rcpt or f"c{i}@example.test"
    raw = f"From: shop@example.test\r\nTo: {rcpt}\r\nSubject: Hi {i}\r\n\r\nHello {i}\r\n".encode()
    return OutgoingMessage(f"run-1/{i}", "shop@example.test", rcpt, raw)


def send(
    server: _ApiServer, messages: list[OutgoingMessage], policy: DeliveryPolicy = FAST
) -> list[SendResult]:
    results: list[SendResult] = []
    with HttpApiSender(server.url, TOKEN, policy) as sender:
        sender.send_batch(messages, results.append)
    return results


# -- the policy through the HTTP sender -------------------------------------------------------------------


def test_every_message_once_with_at_most_concurrency_requests_in_flight(api: Any) -> None:
    server = api(ApiPlan(barrier=4))  # each request waits until 4 are in flight: proves they overlap
    messages = [message(i) for i in range(20)]
    results: list[SendResult] = []
    with HttpApiSender(server.url, TOKEN, DeliveryPolicy(concurrency=4)) as sender:
        assert isinstance(sender, Sender)  # the runtime protocol check, besides mypy's
        sender.send_batch(messages[:8], results.append)
        sender.send_batch(messages[8:], results.append)  # pooled connections survive between batches
        assert sender.connections_opened == 4
    assert sorted(r.key for r in results) == sorted(m.key for m in messages)
    assert all((r.status, r.code, r.attempts) == (SendStatus.SENT, "http_200", 1) for r in results)
    assert server.state.accepted == {m.rcpt_to: 1 for m in messages}
    assert server.state.barrier is not None and not server.state.barrier.broken
    assert server.state.max_in_flight == 4


def test_temporary_failures_are_retried_after_an_exponential_backoff(api: Any) -> None:
    server = api(ApiPlan(tempfail_first=2))
    results = send(server, [message(i) for i in range(3)], DeliveryPolicy(backoff=0.2, backoff_max=5))
    assert all(r.ok and r.attempts == 3 for r in results)
    assert server.state.accepted == {f"c{i}@example.test": 1 for i in range(3)}
    for arrivals in server.state.arrivals.values():
        first_wait, second_wait = arrivals[1] - arrivals[0], arrivals[2] - arrivals[1]
        # backoff * 2**(n-1) jittered to 50-100 %: at least 0.1 s, then at least 0.2 s (lower bounds only)
        assert first_wait >= 0.1 and second_wait >= 0.2, arrivals


def test_temporary_failures_give_up_as_deferred_after_max_attempts(api: Any) -> None:
    server = api(ApiPlan(tempfail_first=99))
    (r,) = send(server, [message(1)], DeliveryPolicy(max_attempts=3, backoff=0.01))
    assert (r.status, r.final, r.code, r.attempts) == (SendStatus.DEFERRED, False, "http_503", 3)
    assert "gave up after 3 attempt(s)" in r.detail and "503 busy" in r.detail
    assert server.state.tries["c1@example.test"] == 3 and not server.state.accepted


def test_final_statuses_are_reported_once_and_never_retried(api: Any) -> None:
    server = api(ApiPlan(bounce_substring="gone", complaint_substring="angry"))
    messages = [message(1), message(2, "gone@example.test"), message(3, "angry@example.test")]
    results = {r.key: r for r in send(server, messages)}
    assert [(results[m.key].status, results[m.key].code) for m in messages] == [
        (SendStatus.SENT, "http_200"),
        (SendStatus.HARD_BOUNCE, "http_422"),
        (SendStatus.COMPLAINT, "http_422"),
    ]
    assert all(r.final and r.attempts == 1 for r in results.values())
    assert server.state.tries == {m.rcpt_to: 1 for m in messages}


@pytest.mark.parametrize(("code", "status"), [(400, SendStatus.REJECTED), (503, SendStatus.DEFERRED)])
def test_an_api_failing_everything_pauses_after_n_consecutive_failures(
    api: Any, code: int, status: SendStatus
) -> None:
    server = api(ApiPlan(reject_all=code))
    results: list[SendResult] = []
    policy = DeliveryPolicy(concurrency=1, max_attempts=2, backoff=0.01, max_consecutive_failures=5)
    with HttpApiSender(server.url, TOKEN, policy) as sender:
        with pytest.raises(SenderPausedError, match=f"5 messages in a row failed at {server.url}"):
            sender.send_batch([message(i) for i in range(50)], results.append)
    assert 5 <= len(results) < 50  # the rest were never attempted and got no result
    assert all(r.status is status and r.code == f"http_{code}" for r in results)
    assert sum(server.state.tries.values()) < 50 * 2


def test_the_rate_limit_holds_for_the_http_sender(api: Any) -> None:
    server = api()
    results = send(server, [message(i) for i in range(30)], DeliveryPolicy(concurrency=8, rate=40, burst=4))
    assert all(r.ok for r in results)
    times = sorted(server.state.times)
    for start in times:  # counting, so a slow machine cannot fail it
        assert sum(1 for t in times if start <= t < start + 0.25) <= 4 + 40 * 0.25 + 1
    assert times[-1] - times[0] >= (30 - 4 - 2) / 40


def test_a_refused_token_pauses_without_showing_it(api: Any) -> None:
    server = api()
    results: list[SendResult] = []
    with HttpApiSender(server.url, "wrong-token", FAST) as sender:
        with pytest.raises(SenderPausedError, match="refused the API token") as info:
            sender.send_batch([message(1), message(2)], results.append)
    assert results == [] and "wrong-token" not in str(info.value) and not server.state.accepted


def test_a_reply_slower_than_the_timeout_is_unknown_and_not_retried(api: Any) -> None:
    server = api(ApiPlan(slow_reply_s=120))
    results: list[SendResult] = []
    with HttpApiSender(server.url, TOKEN, FAST, timeout=1.0) as sender:
        sender.send_batch([message(1), message(2)], results.append)
    assert all((r.status, r.attempts) == (SendStatus.UNKNOWN, 1) for r in results)
    assert server.state.accepted == {"c1@example.test": 1, "c2@example.test": 1}
    assert server.state.tries == server.state.accepted  # sent once each, never again


def test_an_unreachable_api_is_deferred_after_retries() -> None:
    server = _ApiServer(ApiPlan())
    url = server.url
    server.server_close()  # a port that was free a moment ago and is closed now
    results: list[SendResult] = []
    with HttpApiSender(url, TOKEN, DeliveryPolicy(max_attempts=2, backoff=0.01)) as sender:
        sender.send_batch([message(1)], results.append)
    assert [(r.status, r.attempts) for r in results] == [(SendStatus.DEFERRED, 2)]
    assert "request not sent" in results[0].detail


def test_the_http_sender_by_dotted_path_takes_the_policy_from_settings(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = api()
    monkeypatch.setenv("RETAIN_HTTP_API_URL", server.url)
    monkeypatch.setenv("RETAIN_HTTP_API_TOKEN", TOKEN)
    settings = Settings(send_concurrency=3, send_rate=500.0, max_consecutive_failures=7)
    sender = resolve_sender("tests.http_sender:HttpApiSender", settings)
    assert isinstance(sender, HttpApiSender)
    assert (sender.policy.concurrency, sender.policy.rate, sender.policy.max_consecutive_failures) == (
        3,
        500,
        7,
    )
    results: list[SendResult] = []
    with sender:
        sender.send_batch([message(i) for i in range(5)], results.append)
    assert sum(r.ok for r in results) == 5


def test_the_runner_suppresses_hard_bounces_and_complaints_from_any_transport(
    api: Any, store: Any, tmp_path: Path
) -> None:
    settings = shop_settings(tmp_path, holdout_share=0.0)
    make_shop(store, customers=30, bounce_every=5)  # bounce0, bounce5 ... bounce25
    train_model(store, settings)
    server = api(ApiPlan(bounce_substring="bounce", complaint_substring="bounce1"))  # 10, 15: complaints
    sender = HttpApiSender(server.url, TOKEN, FAST)
    definition = find_campaign(Path(settings.templates_dir), "weekly-picks")
    with sender:
        summary = run_campaign(
            store,
            settings,
            definition,
            recommender=load_recommender(settings, store),
            sender=sender,
            run_key="h",
        )
    assert (summary.sent, summary.failed) == (24, 6), summary.failures
    assert all(k.startswith("http_422") for k in summary.failures)
    assert store.suppression_counts() == {"hard_bounce": 4, "complaint": 2}


# -- the policy's own pieces -------------------------------------------------------------------------------


def test_policy_defaults_come_from_settings_and_dsn_options_win() -> None:
    settings = Settings(send_concurrency=9, send_rate=2.5, max_consecutive_failures=11)
    assert DeliveryPolicy.from_settings(settings) == DeliveryPolicy(
        concurrency=9, rate=2.5, max_consecutive_failures=11
    )
    dsn = parse_dsn("smtp://h?concurrency=3&burst=2&max_attempts=6&backoff=0.2&backoff_max=4")
    assert DeliveryPolicy.from_dsn(dsn, settings) == DeliveryPolicy(
        concurrency=3,
        rate=2.5,
        burst=2,
        max_attempts=6,
        backoff=0.2,
        backoff_max=4,
        max_consecutive_failures=11,
    )
    assert DeliveryPolicy() == DeliveryPolicy(64, 0.0, 0.0, 4, 0.5, 30.0, 50)  # the documented defaults


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("smtp://u:secret@h?concurrency=0", "concurrency must be at least 1, got 0"),
        ("smtp://u:secret@h?backoff=-1", "backoff must not be negative"),
        ("smtp://u:secret@h?max_attempts=two", "max_attempts='two' must be int"),
    ],
)
def test_bad_policy_options_name_the_dsn_without_the_password(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_sender(spec, Settings())
    assert fragment in str(info.value) and "u:***@h" in str(info.value) and "secret" not in str(info.value)


def test_backoff_doubles_per_failure_is_capped_and_jittered_to_half_or_more() -> None:
    policy = DeliveryPolicy(backoff=0.5, backoff_max=3.0)
    for failures, full in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 3.0), (9, 3.0)]:
        delays = [policy.backoff_delay(failures) for _ in range(200)]
        assert all(full * 0.5 <= d <= full for d in delays)
        assert max(delays) - min(delays) > full * 0.2  # jittered, not constant


def test_every_bundled_sender_satisfies_the_protocol(tmp_path: Path) -> None:
    # mypy checks the same through the `_: type[Sender] = ...` line in each module
    bundled: list[type[Sender]] = [SmtpSender, OutboxSender, ConsoleSender, MemorySender, HttpApiSender]
    assert {cls.name for cls in bundled} == {"smtp", "outbox", "console", "memory", "http-api"}
    for spec in ("memory://", "console://", f"outbox://{tmp_path}", "smtp://127.0.0.1:1?tls=none"):
        assert isinstance(resolve_sender(spec, Settings()), Sender)


def test_the_worked_example_in_docs_senders_md_is_this_sender() -> None:
    import inspect
    import re

    from . import http_sender

    docs = (Path(__file__).resolve().parent.parent / "docs" / "senders.md").read_text(encoding="utf-8")
    block = re.search(r"```python\n(class HttpApiSender.*?)```", docs, re.S)
    assert block is not None
    source = inspect.getsource(http_sender).splitlines()
    missing = [line for line in block.group(1).splitlines() if line.strip() and line not in source]
    assert missing == []
