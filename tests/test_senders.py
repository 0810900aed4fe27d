"""Senders without a network: DSN parsing and masking, the resolver, memory, outbox and console senders."""

from __future__ import annotations

import email
import io
import mailbox
from email import policy
from pathlib import Path

import pytest

from campaigns.config import Settings
from campaigns.errors import ConfigError
from campaigns.senders import OutgoingMessage, SendResult, SendStatus, mask_dsn, parse_dsn, resolve_sender
from campaigns.senders import memory as memory_module
from campaigns.senders.console import ConsoleSender
from campaigns.senders.memory import MemorySender
from campaigns.senders.outbox import OutboxSender, safe_file_stem
from campaigns.senders.smtp import SmtpSender, smtp_status, wire_data


def message(i: int, rcpt: str | None = None) -> OutgoingMessage:
    raw = (
        f"From: Shop <shop@example.test>\r\nTo: c{i}@example.test\r\nSubject: Hello {i}\r\n"
        f"Message-ID: <m{i}@example.test>\r\n\r\nHi customer {i}\r\n.leading dot\r\n"
    ).encode()
    return OutgoingMessage(
        f"run-1/{i}", "shop@example.test", rcpt or f"c{i}@example.test", raw, f"<m{i}@example.test>"
    )


# -- DSNs -------------------------------------------------------------------------------------------------


def test_parse_smtp_dsn_with_options_and_encoded_password() -> None:
    dsn = parse_dsn("smtp://mailer:p%40ss%2Fw@smtp.example.test:2525?tls=starttls&rate=10")
    assert (dsn.scheme, dsn.host, dsn.port, dsn.username) == ("smtp", "smtp.example.test", 2525, "mailer")
    assert dsn.password == "p@ss/w"
    assert dsn.options == {"tls": "starttls", "rate": "10"}
    assert "p@ss" not in repr(dsn) and "p%40ss" not in str(dsn)


@pytest.mark.parametrize(
    ("spec", "shown"),
    [
        ("smtp://u:secret@h:25", "smtp://u:***@h:25"),
        ("smtp://u:se@cret@h", "smtp://u:***@h"),
        ("ftp://u:secret@h/x?y", "ftp://u:***@h/x?y"),
        ("smtp://h:25", "smtp://h:25"),
    ],
)
def test_mask_dsn_hides_the_password(spec: str, shown: str) -> None:
    assert mask_dsn(spec) == shown


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("ftp://u:secret@host", "unknown scheme 'ftp'"),
        ("smtp://u:secret@", "no host"),
        ("smtp://u:secret@host:99999", "out of range"),
        ("smtp://u:secret@host?colour=red", "unknown option(s) colour"),
        ("smtp://u:secret@host?rate=fast", "rate='fast' must be float"),
        ("smtp://u:secret@host?tls=maybe", "tls='maybe'"),
        ("smtps://u:secret@host?tls=none", "implicit TLS"),
        ("outbox://", "needs a directory"),
        ("no such thing", "not a DSN, an alias or a dotted path"),
        ("campaigns.nope:Sender", "cannot import module 'campaigns.nope'"),
        ("campaigns.senders.memory:Nope", "has no attribute 'Nope'"),
        ("campaigns.senders.dsn:SenderDSN", "cannot build it"),
    ],
)
def test_bad_specs_raise_config_error_without_the_password(spec: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        resolve_sender(spec, Settings())
    assert fragment in str(info.value)
    assert "secret" not in str(info.value)


def test_unknown_scheme_error_lists_the_valid_forms() -> None:
    with pytest.raises(ConfigError, match=r"Valid forms: smtp://.*outbox:///.*memory://"):
        resolve_sender("carrier-pigeon://coop", Settings())


# -- the resolver -----------------------------------------------------------------------------------------


def test_smtp_dsn_takes_defaults_from_settings_and_password_from_the_environment_setting() -> None:
    settings = Settings(
        send_concurrency=7, send_rate=3.5, max_consecutive_failures=9, smtp_password="hunter2"
    )
    sender = resolve_sender("smtp://mailer@smtp.example.test?tls=starttls", settings)
    assert isinstance(sender, SmtpSender)
    o, p = sender.options, sender.policy
    assert (o.port, o.tls, p.concurrency, p.rate, p.max_consecutive_failures) == (587, "starttls", 7, 3.5, 9)
    assert o.password == "hunter2"
    assert "hunter2" not in repr(sender) and "hunter2" not in repr(o)
    # the DSN's own options win over settings; smtps means implicit TLS on 465
    sender = resolve_sender(
        "smtps://u:pw@smtp.example.test?concurrency=2&max_per_connection=5&backoff=0.1&max_attempts=2",
        settings,
    )
    assert isinstance(sender, SmtpSender)
    assert (sender.options.port, sender.options.tls, sender.policy.concurrency) == (465, "implicit", 2)
    assert sender.options.password == "pw" and sender.options.max_per_connection == 5
    assert (sender.policy.backoff, sender.policy.max_attempts, sender.policy.rate) == (0.1, 2, 3.5)


def test_aliases(tmp_path: Path) -> None:
    settings = Settings(var_dir=str(tmp_path))
    assert isinstance(resolve_sender("memory", settings), MemorySender)
    assert isinstance(resolve_sender("console", settings), ConsoleSender)
    outbox = resolve_sender("outbox", settings)
    assert isinstance(outbox, OutboxSender) and outbox.directory == tmp_path / "outbox"
    # an empty spec means the configured default: the outbox under var_dir
    default = resolve_sender("", settings)
    assert isinstance(default, OutboxSender) and default.directory == tmp_path / "outbox"


class FakeSender:
    """A third-party sender found by dotted path."""

    name = "fake"

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings

    @classmethod
    def from_settings(cls, settings: Settings) -> FakeSender:
        return cls(settings)

    def send_batch(self, messages: object, on_result: object) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


@pytest.mark.parametrize("spec", ["tests.test_senders:FakeSender", "tests.test_senders.FakeSender"])
def test_dotted_path_uses_from_settings(spec: str) -> None:
    settings = Settings(shop_name="Dotted")
    sender = resolve_sender(spec, settings)
    assert isinstance(sender, FakeSender) and sender.settings is settings


def test_dotted_path_without_from_settings_and_sender_objects_pass_through() -> None:
    assert isinstance(resolve_sender("campaigns.senders.memory.MemorySender", Settings()), MemorySender)
    existing = MemorySender("objects")
    assert resolve_sender(existing, Settings()) is existing


# -- memory -----------------------------------------------------------------------------------------------


def test_memory_dsn_resolved_twice_shares_one_outbox() -> None:
    memory_module.clear()
    first = resolve_sender("memory://", Settings())
    second = resolve_sender("memory://", Settings())
    results: list[SendResult] = []
    first.send_batch([message(1)], results.append)
    second.send_batch([message(2)], results.append)
    assert [m.rcpt_to for m in memory_module.outbox()] == ["c1@example.test", "c2@example.test"]
    assert isinstance(first, MemorySender) and first.outbox is memory_module.outbox()
    assert [(r.key, r.ok) for r in results] == [("run-1/1", True), ("run-1/2", True)]
    named = resolve_sender("memory://other", Settings())
    assert isinstance(named, MemorySender) and named.outbox == []
    memory_module.clear()
    assert first.outbox == []


def test_memory_bounce_option_reports_hard_bounces() -> None:
    sender = resolve_sender("memory://bounces?bounce=c2@example.test", Settings())
    results: list[SendResult] = []
    sender.send_batch([message(1), message(2)], results.append)
    assert [(r.ok, r.final, r.status, r.code) for r in results] == [
        (True, True, SendStatus.SENT, "smtp_250"),
        (False, True, SendStatus.HARD_BOUNCE, "smtp_550"),
    ]


# -- outbox -----------------------------------------------------------------------------------------------


def test_outbox_writes_parseable_eml_files_into_a_maildir(tmp_path: Path) -> None:
    target = tmp_path / "box"
    sender = resolve_sender(f"outbox://{target}", Settings())
    results: list[SendResult] = []
    with sender:
        sender.send_batch([message(i) for i in range(3)], results.append)
    assert all(r.ok for r in results) and len(results) == 3
    assert sorted(p.name for p in (target / "tmp").iterdir()) == []
    files = sorted((target / "new").glob("*.eml"))
    assert len(files) == 3
    parsed = email.message_from_bytes(files[0].read_bytes(), policy=policy.default)
    assert parsed["Subject"] == "Hello 0" and parsed["To"] == "c0@example.test"
    assert ".leading dot" in parsed.get_content()
    assert b"\r\n" not in files[0].read_bytes()  # Maildir files use LF
    # the standard library reads it as a Maildir
    assert sorted(m["Subject"] for m in mailbox.Maildir(target, create=False)) == [
        "Hello 0",
        "Hello 1",
        "Hello 2",
    ]


def test_outbox_file_names_are_safe_and_duplicates_stay_visible(tmp_path: Path) -> None:
    sender = OutboxSender(tmp_path)
    nasty = OutgoingMessage("../../etc/passwd run:1/ü", "a@b.test", "c@d.test", b"Subject: x\n\nbody\n")
    sender.send_batch([nasty, nasty], lambda r: None)
    names = sorted(p.name for p in (tmp_path / "new").iterdir())
    assert len(names) == 2 and all("/" not in n and not n.startswith(".") for n in names)
    assert names[0].endswith(".2.eml") or names[1].endswith(".2.eml")
    assert sender.path_for(nasty.key).exists()
    assert safe_file_stem("a/b") != safe_file_stem("a_b")  # different keys never collide


def test_outbox_relative_dsn_and_unwritable_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sender = resolve_sender("outbox://var/outbox", Settings())
    assert isinstance(sender, OutboxSender) and sender.directory == Path("var/outbox")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="cannot create it"):
        OutboxSender(tmp_path / "file" / "box")


# -- console ----------------------------------------------------------------------------------------------


def test_console_prints_envelope_and_message() -> None:
    out = io.StringIO()
    results: list[SendResult] = []
    ConsoleSender(stream=out).send_batch([message(5)], results.append)
    text = out.getvalue()
    assert "RCPT TO:<c5@example.test>" in text and "Subject: Hello 5" in text and "Hi customer 5" in text
    assert results == [SendResult("run-1/5", SendStatus.SENT, "printed")]
    out = io.StringIO()
    ConsoleSender(stream=out, headers_only=True).send_batch([message(6)], results.append)
    assert "Subject: Hello 6" in out.getvalue() and "Hi customer 6" not in out.getvalue()


# -- the DATA payload -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"a\nb", b"a\r\nb\r\n.\r\n"),
        (b".x\r\n..y\n.\rz", b"..x\r\n...y\r\n..\r\nz\r\n.\r\n"),
        (b"abc\r\n", b"abc\r\n.\r\n"),
        (b"x\r\r\n.", b"x\r\n\r\n..\r\n.\r\n"),
    ],
)
def test_wire_data_normalises_line_endings_and_dot_stuffs(data: bytes, wire: bytes) -> None:
    assert wire_data(data) == wire


def test_wire_data_matches_the_plain_bytes_passes_on_random_input() -> None:
    """The numpy scan in wire_data gives the same payload as the straightforward bytes passes."""
    import random

    def reference(data: bytes) -> bytes:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
        data = data if data.endswith(b"\r\n") else data + b"\r\n"
        data = b"." + data if data.startswith(b".") else data
        return data.replace(b"\r\n.", b"\r\n..") + b".\r\n"

    rnd = random.Random(7)
    for _ in range(20_000):
        data = bytes(rnd.choice(b"\r\n.a") for _ in range(rnd.randint(0, 10)))
        assert wire_data(data) == reference(data), data


# -- SMTP replies onto statuses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stage", "code", "text", "written", "status"),
    [
        ("RCPT TO", 550, "5.1.1 No such user", False, SendStatus.HARD_BOUNCE),
        ("RCPT TO", 553, "mailbox name not allowed", False, SendStatus.HARD_BOUNCE),  # no enhanced code
        ("RCPT TO", 551, "", False, SendStatus.HARD_BOUNCE),
        ("RCPT TO", 554, "5.1.2 Bad destination system", False, SendStatus.HARD_BOUNCE),
        ("RCPT TO", 554, "no such domain", False, SendStatus.REJECTED),
        # an enhanced code decides over the basic one: a blocked client or a full mailbox is no bad address
        ("RCPT TO", 550, "5.7.1 Client host blocked", False, SendStatus.REJECTED),
        ("RCPT TO", 552, "5.2.2 Mailbox full", False, SendStatus.REJECTED),
        ("RCPT TO", 550, "5.1.8 Sender address rejected: Domain not found", False, SendStatus.REJECTED),
        # MAIL FROM refused: the server refuses us, not the address: a later pass of the run retries
        ("MAIL FROM", 550, "5.1.1 No such user", False, SendStatus.DEFERRED),
        ("MAIL FROM", 530, "5.7.0 Authentication required", False, SendStatus.DEFERRED),
        ("DATA", 554, "5.6.0 Message content rejected", True, SendStatus.REJECTED),
        ("RCPT TO", 451, "4.3.0 Try again later", False, SendStatus.DEFERRED),
        ("DATA", 421, "4.3.2 Shutting down", True, SendStatus.DEFERRED),  # a final "no": retrying is safe
        ("MAIL FROM", 221, "Bye", False, SendStatus.DEFERRED),  # an unexpected reply before the payload
        ("DATA", 221, "Bye", True, SendStatus.UNKNOWN),  # ... and after it
    ],
)
def test_smtp_replies_map_onto_statuses(
    stage: str, code: int, text: str, written: bool, status: SendStatus
) -> None:
    assert smtp_status(stage, code, text, written) is status


def test_send_result_ok_and_final_follow_the_status() -> None:
    assert [(s.value, SendResult("k", s).ok, SendResult("k", s).final) for s in SendStatus] == [
        ("sent", True, True),
        ("deferred", False, False),
        ("rejected", False, True),
        ("hard_bounce", False, True),
        ("complaint", False, True),
        ("unknown", False, True),
    ]
    assert SendResult("k", SendStatus.SENT) == SendResult("k", SendStatus.SENT, "", None, 1)
