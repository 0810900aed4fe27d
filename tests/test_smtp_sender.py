"""The SMTP sender against a real aiosmtpd server on loopback (the fault-injecting sink), no mocks."""

from __future__ import annotations

import email
from collections.abc import Iterator
from email import policy
from pathlib import Path

import pytest

from campaigns.config import Settings
from campaigns.errors import ConfigError, SenderPausedError
from campaigns.senders import OutgoingMessage, SendResult, SendStatus, resolve_sender
from campaigns.senders.smtp import SmtpSender

from .smtp_sink import FaultPlan, SinkProcess, SmtpSink, read_log

FAST = "&backoff=0.01&backoff_max=0.05&timeout=5"


def message(i: int, rcpt: str | None = None) -> OutgoingMessage:
    rcpt = rcpt or f"c{i}@example.test"
    raw = (
        f"From: Shop <shop@example.test>\nTo: {rcpt}\nSubject: Hello {i}\nMessage-ID: <m{i}@example.test>\n"
        f"Content-Type: text/plain; charset=utf-8\n\nHi customer {i}\n.a line starting with a dot\n.\nend\n"
    ).encode()
    return OutgoingMessage(f"run-1/{i}", "shop@example.test", rcpt, raw, f"<m{i}@example.test>")


@pytest.fixture
def sink_factory() -> Iterator[object]:
    started: list[SmtpSink] = []

    def make(plan: FaultPlan | None = None, **kwargs: object) -> SmtpSink:
        sink = SmtpSink(plan or FaultPlan(), **kwargs).start()  # type: ignore[arg-type]
        started.append(sink)
        return sink

    yield make
    for sink in started:
        sink.stop()


def send(
    sink: SmtpSink, messages: list[OutgoingMessage], options: str = "", **settings: object
) -> list[SendResult]:
    results: list[SendResult] = []
    with resolve_sender(sink.dsn + FAST + options, Settings(**settings)) as sender:  # type: ignore[arg-type]
        sender.send_batch(messages, results.append)
    return results


def test_messages_arrive_intact_once_each_over_reused_connections(sink_factory) -> None:
    sink = sink_factory()
    messages = [message(i) for i in range(40)]
    results: list[SendResult] = []
    with resolve_sender(sink.dsn + "&concurrency=4", Settings()) as sender:
        assert isinstance(sender, SmtpSender)
        sender.send_batch(messages[:20], results.append)
        sender.send_batch(messages[20:], results.append)  # the pool survives between batches
        assert sender.connections_opened <= 4
    assert sorted(r.key for r in results) == sorted(m.key for m in messages)
    assert all(r.ok and r.code == "smtp_250" and r.attempts == 1 for r in results)
    assert sink.counts == {m.rcpt_to: 1 for m in messages}
    by_rcpt = {rcpt: data for _, rcpt, data in sink.stats.messages}
    for m in messages:
        got = by_rcpt[m.rcpt_to]
        assert got == m.data.replace(b"\n", b"\r\n")  # only the line endings changed on the wire
        parsed = email.message_from_bytes(got, policy=policy.default)
        assert parsed["Message-ID"] == m.message_id
        assert ".a line starting with a dot\n.\nend" in parsed.get_content().replace("\r\n", "\n")


def test_max_per_connection_opens_new_connections(sink_factory) -> None:
    sink = sink_factory()
    with resolve_sender(sink.dsn + "&concurrency=1&max_per_connection=3", Settings()) as sender:
        assert isinstance(sender, SmtpSender)
        sender.send_batch([message(i) for i in range(10)], lambda r: None)
        assert sender.connections_opened == 4
    assert sum(sink.counts.values()) == 10


def test_4xx_is_retried_then_succeeds(sink_factory) -> None:
    sink = sink_factory(FaultPlan(tempfail_first=2))
    results = send(sink, [message(i) for i in range(10)])
    assert all(r.ok for r in results) and {r.attempts for r in results} == {3}
    assert sink.counts == {f"c{i}@example.test": 1 for i in range(10)}
    assert sink.stats.faults["tempfail"] == 20


def test_4xx_gives_up_after_max_attempts_as_deferred(sink_factory) -> None:
    sink = sink_factory(FaultPlan(tempfail_first=99))
    results = send(sink, [message(1)], "&max_attempts=3")
    assert len(results) == 1
    r = results[0]
    assert (r.ok, r.final, r.status, r.code, r.attempts) == (False, False, SendStatus.DEFERRED, "smtp_451", 3)
    assert "gave up after 3 attempt(s)" in r.detail and "451" in r.detail
    assert sink.counts == {}


def test_5xx_on_rcpt_is_a_final_hard_bounce(sink_factory) -> None:
    sink = sink_factory(FaultPlan(bounce_substring="bounce"))
    messages = [message(1), message(2, "bounce-me@example.test"), message(3)]
    results = {r.key: r for r in send(sink, messages)}
    bounced = results["run-1/2"]
    assert (bounced.ok, bounced.final, bounced.status, bounced.code, bounced.attempts) == (
        False,
        True,
        SendStatus.HARD_BOUNCE,
        "smtp_550",
        1,
    )
    assert "RCPT TO" in bounced.detail
    assert results["run-1/1"].ok and results["run-1/3"].ok
    assert sink.counts == {"c1@example.test": 1, "c3@example.test": 1}
    assert sink.stats.faults["bounce"] == 1  # never retried


def test_connection_dropped_before_the_payload_is_retried_on_another_connection(sink_factory) -> None:
    sink = sink_factory(FaultPlan(drop_first=1, drop_at="rcpt"))
    results: list[SendResult] = []
    with resolve_sender(sink.dsn + FAST + "&concurrency=2", Settings()) as sender:
        assert isinstance(sender, SmtpSender)
        sender.send_batch([message(i) for i in range(6)], results.append)
        assert sender.connections_opened >= 7  # every drop cost a connection
    assert all(r.ok and r.attempts == 2 for r in results)
    assert sink.counts == {f"c{i}@example.test": 1 for i in range(6)}


def test_connection_dropped_after_the_payload_is_unknown_and_never_retried(sink_factory) -> None:
    sink = sink_factory(FaultPlan(drop_first=1))  # drops after the data arrived, before the reply
    results = send(sink, [message(i) for i in range(4)], "&concurrency=2")
    assert len(results) == 4
    assert all((r.status, r.attempts, r.code) == (SendStatus.UNKNOWN, 1, None) for r in results)
    assert all(r.final and "may have been delivered" in r.detail for r in results)
    assert sink.stats.faults["drop"] == 4  # one DATA per message: nothing was sent twice
    assert sink.counts == {}


def test_a_final_reply_slower_than_the_timeout_is_unknown_not_a_retry(sink_factory) -> None:
    """The sink stores each message, then holds its reply after DATA far beyond the client's final-reply
    timeout: the message was delivered, so a retry would duplicate it. The sender reports UNKNOWN after one
    attempt."""
    sink = sink_factory(FaultPlan(slow_reply_s=120, slow_reply_first=1))  # only the first try is slow
    messages = [message(i) for i in range(3)]
    results: list[SendResult] = []
    dsn = sink.dsn + "&final_reply_timeout=1.5&concurrency=3&backoff=0.01"
    with resolve_sender(dsn, Settings()) as sender:
        assert isinstance(sender, SmtpSender)
        sender.send_batch(messages, results.append)
        assert sender.connections_opened == 3
        sink.plan.slow_reply_s = 0  # the server recovers
        later: list[SendResult] = []
        sender.send_batch([message(9)], later.append)
        assert sender.connections_opened == 4  # the timed-out sessions were closed, not reused
    assert sorted(r.key for r in results) == sorted(m.key for m in messages)
    assert all((r.status, r.attempts, r.ok, r.final) == (SendStatus.UNKNOWN, 1, False, True) for r in results)
    assert all("no final reply after the message was sent" in r.detail for r in results)
    assert sink.stats.faults["slow_reply"] == 3  # one DATA per message: the sender never retried
    assert sink.counts == {m.rcpt_to: 1 for m in messages} | {"c9@example.test": 1}  # stored once each
    assert later[0].ok


def test_a_slow_final_reply_within_final_reply_timeout_is_sent_once(sink_factory) -> None:
    """The per-command ``timeout`` does not cut the wait for the reply after the message data: a server
    that stores the message and acknowledges it after 2.5 s (longer than timeout=1) is waited for."""
    sink = sink_factory(FaultPlan(slow_reply_s=2.5))
    messages = [message(i) for i in range(2)]
    results: list[SendResult] = []
    with resolve_sender(sink.dsn + "&timeout=1&final_reply_timeout=30&concurrency=2", Settings()) as sender:
        assert isinstance(sender, SmtpSender)
        assert sender.options.timeout == 1 and sender.options.final_reply_timeout == 30
        sender.send_batch(messages, results.append)
    assert all(r.ok and r.attempts == 1 for r in results)
    assert sink.counts == {m.rcpt_to: 1 for m in messages}


def test_final_reply_timeout_defaults_to_rfc_5321s_ten_minutes() -> None:
    with resolve_sender("smtp://127.0.0.1:2525?tls=none", Settings()) as sender:
        assert isinstance(sender, SmtpSender)
        assert sender.options.final_reply_timeout == 600.0
        assert sender.options.timeout == 30.0
    with pytest.raises(ConfigError, match="final_reply_timeout"):
        resolve_sender("smtp://127.0.0.1:2525?final_reply_timeout=0", Settings())
    with pytest.raises(ConfigError, match="final_reply_timeout=.* must be float"):
        resolve_sender("smtp://127.0.0.1:2525?final_reply_timeout=soon", Settings())


def test_random_faults_never_duplicate_or_lose_a_message(sink_factory) -> None:
    sink = sink_factory(FaultPlan(tempfail_rate=0.1, drop_rate=0.05, bounce_substring="bounce", seed=7))
    messages = [message(i, f"bounce{i}@example.test" if i % 25 == 0 else None) for i in range(200)]
    results = send(sink, messages, "&concurrency=16&max_attempts=6", max_consecutive_failures=1000)
    assert sorted(r.key for r in results) == sorted(m.key for m in messages)  # exactly one result each
    delivered = {
        m.rcpt_to
        for m, r in zip(messages, sorted(results, key=lambda r: int(r.key.split("/")[1])), strict=True)
        if r.ok
    }
    assert sink.counts == {rcpt: 1 for rcpt in delivered}  # ok <=> received exactly once
    bounced = [r for r in results if r.status is SendStatus.HARD_BOUNCE]
    assert len(bounced) == 8 and all(r.code == "smtp_550" for r in bounced)
    # a drop after the payload was sent is UNKNOWN, never retried; the sink never stored those
    assert any(r.status is SendStatus.UNKNOWN and r.attempts == 1 for r in results)
    assert sink.stats.faults["tempfail"] > 0 and sink.stats.faults["drop"] > 0


@pytest.mark.parametrize("code", [554, 421])
def test_a_server_rejecting_everything_pauses_instead_of_burning_the_list(sink_factory, code: int) -> None:
    sink = sink_factory(FaultPlan(reject_all=code))
    results: list[SendResult] = []
    sender = resolve_sender(
        sink.dsn + FAST + "&concurrency=1&max_attempts=2", Settings(max_consecutive_failures=5)
    )
    with sender, pytest.raises(SenderPausedError, match="5 messages in a row failed") as info:
        sender.send_batch([message(i) for i in range(50)], results.append)
    assert "run the same command again to resume" in str(info.value)
    assert f"last: MAIL FROM: {code}" in str(info.value)  # the reason, for the summary and run show
    assert 5 <= len(results) < 50  # the rest were never attempted and got no result
    # left for a later pass of the run, nobody failed for good
    assert all(r.status is SendStatus.DEFERRED and r.code == f"smtp_{code}" for r in results)
    if code >= 500:  # a 5xx to MAIL FROM is not repeated in the same call
        assert all(r.attempts == 1 and "MAIL FROM: 554" in r.detail for r in results)
    assert sink.counts == {}


def test_after_a_pause_the_same_sender_can_send_again(sink_factory) -> None:
    sink = sink_factory(FaultPlan(reject_all=554))
    sender = resolve_sender(sink.dsn + FAST + "&concurrency=1", Settings(max_consecutive_failures=3))
    with sender:
        with pytest.raises(SenderPausedError):
            sender.send_batch([message(i) for i in range(10)], lambda r: None)
        sink.plan.reject_all = 0  # the operator fixed the server
        results: list[SendResult] = []
        sender.send_batch([message(i) for i in range(10)], results.append)
    assert len(results) == 10 and all(r.ok for r in results)


def test_rate_limit_is_respected(sink_factory) -> None:
    sink = sink_factory()
    results = send(sink, [message(i) for i in range(30)], "&concurrency=8&rate=40&burst=4")
    assert all(r.ok for r in results)
    times = sorted(sink.stats.times)
    # at most burst + rate * window messages in any window (counting, so a slow machine cannot fail it)
    for start in times:
        assert sum(1 for t in times if start <= t < start + 0.25) <= 4 + 40 * 0.25 + 1
    assert times[-1] - times[0] >= (30 - 4 - 2) / 40


def test_auth_login_and_a_refused_login_pauses_without_showing_the_password(sink_factory) -> None:
    sink = sink_factory(auth=("mailer", "right-pass"))
    dsn = sink.dsn.replace("smtp://", "smtp://mailer@") + FAST
    results: list[SendResult] = []
    with resolve_sender(dsn, Settings(smtp_password="right-pass")) as sender:
        sender.send_batch([message(1)], results.append)
    assert results[0].ok and sink.counts == {"c1@example.test": 1}
    results = []
    with resolve_sender(dsn, Settings(smtp_password="wrong-pass")) as sender:
        with pytest.raises(SenderPausedError, match="refused the login for user 'mailer'") as info:
            sender.send_batch([message(2)], results.append)
    assert "wrong-pass" not in str(info.value) and results == []


def test_an_exception_in_on_result_stops_the_batch_and_propagates(sink_factory) -> None:
    sink = sink_factory()
    seen: list[SendResult] = []

    def record(result: SendResult) -> None:
        seen.append(result)
        if len(seen) == 3:
            raise RuntimeError("ledger down")

    with resolve_sender(sink.dsn + "&concurrency=1", Settings()) as sender:
        with pytest.raises(RuntimeError, match="ledger down"):
            sender.send_batch([message(i) for i in range(50)], record)
        assert sum(sink.counts.values()) < 50
        later: list[SendResult] = []
        sender.send_batch([message(99)], later.append)
    assert later[0].ok


def test_connection_refused_is_retried_then_reported(tmp_path: Path) -> None:
    with SmtpSink() as sink:
        port = sink.port  # a port that was free a moment ago and is closed now
    results: list[SendResult] = []
    with resolve_sender(f"smtp://127.0.0.1:{port}?tls=none" + FAST + "&max_attempts=2", Settings()) as sender:
        sender.send_batch([message(1)], results.append)
    assert len(results) == 1 and results[0].status is SendStatus.DEFERRED and not results[0].final
    assert "cannot connect" in results[0].detail and results[0].attempts == 2


def test_sink_in_a_separate_process_counts_in_its_log(tmp_path: Path) -> None:
    log = tmp_path / "sink.log"
    with SinkProcess(log, FaultPlan(bounce_substring="bounce")) as sink:
        results: list[SendResult] = []
        with resolve_sender(sink.dsn + FAST, Settings()) as sender:
            sender.send_batch(
                [message(i) for i in range(5)] + [message(9, "bounce@example.test")], results.append
            )
    assert sum(r.ok for r in results) == 5
    assert read_log(log) == {f"c{i}@example.test": 1 for i in range(5)}
    assert "<m0@example.test>" in log.read_text()


def test_withdrawn_messages_are_not_started_and_get_no_result(sink_factory) -> None:
    """``withdraw`` (from the caller's thread, mid-batch) takes back messages no worker has started."""
    sink = sink_factory(FaultPlan(delay_ms=15))
    messages = [message(i) for i in range(20)]
    results: list[SendResult] = []
    with resolve_sender(sink.dsn + FAST + "&concurrency=1", Settings()) as sender:
        assert isinstance(sender, SmtpSender)

        def on_result(res: SendResult) -> None:
            results.append(res)
            if len(results) == 2:
                sender.withdraw([m.key for m in messages[10:]])

        sender.send_batch(messages, on_result)
    keys = {r.key for r in results}
    assert all(r.ok for r in results)
    assert keys <= {m.key for m in messages[:10]}  # nothing withdrawn was sent or reported
    assert len(keys) >= 2 and not set(sink.counts) & {m.rcpt_to for m in messages[10:]}
