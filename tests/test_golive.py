"""The go-live guard and `retain doctor`: a real send refuses an unsafe setup unless overridden on purpose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from campaigns.cli import main
from campaigns.config import Settings, settings_to_env
from campaigns.definition import find_campaign
from campaigns.errors import ConfigError
from campaigns.golive import checklist, failed_musts, guard_send, is_real_transport, reserved_domain
from campaigns.keys import backup
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn
from campaigns.training import train_model

from .smtp_sink import SmtpSink
from .synthetic import AS_OF, ROOT, make_shop, shop_settings

GOOD = dict(
    public_url="https://links.paperpine.co.uk",
    from_address="Paper & Pine <hello@paperpine.co.uk>",
    shop_address="4 Mill Lane, Hebden Bridge HX7 8AB, United Kingdom",
    shop_url="https://paperpine.co.uk",
)


def _own_customers(store: Any, n: int = 12) -> None:
    """A small shop whose customers have real-looking (non-demo) addresses."""
    from datetime import timedelta

    batch = ImportBatch(source="test")
    for p in range(6):
        batch.products[f"P{p}"] = ProductIn(f"P{p}", f"Product {p}", 5.0 + p, "GBP", category="kitchen")
    for c in range(n):
        key = f"K{c}"
        batch.customers[key] = CustomerIn(
            key, email=f"buyer{c}@mailbox.paperpine-customers.net", first_name=f"N{c}", country="United Kingdom",
            timezone="Europe/London", marketing_consent=True, consent_source="test",
        )  # fmt: skip
        for o in range(3):
            when = AS_OF - timedelta(days=3 + c + o * 5)
            lines = [(f"P{(c + o) % 6}", 1, 5.0), (f"P{(c + o + 1) % 6}", 2, 6.0)]
            batch.orders[f"O{c}-{o}"] = OrderIn(f"O{c}-{o}", key, when, "GBP", lines)
    store.write_import(batch)


@pytest.mark.parametrize(
    ("spec", "real"),
    [("outbox://var/outbox", False), ("console://", False), ("memory://", False), ("outbox", False),
     ("smtp://127.0.0.1:2525", True), ("smtp", True), ("smtps://mail.shop.co.uk", True), ("my.pkg:Sender", True)],
)  # fmt: skip
def test_real_transport(spec: str, real: bool) -> None:
    assert is_real_transport(spec) is real


@pytest.mark.parametrize(
    ("domain", "reserved"),
    [("example.com", True), ("shop.example.com", True), ("shop.example", True), ("x.test", True),
     ("a.invalid", True), ("localhost", True), ("paperpine.co.uk", False), ("myexample.com", False)],
)  # fmt: skip
def test_reserved_domains(domain: str, reserved: bool) -> None:
    assert reserved_domain(domain) is reserved


def test_demo_settings_fail_every_must(sqlite_store: Any, tmp_path: Path) -> None:
    make_shop(sqlite_store, customers=5)  # @example.com identities
    s = Settings(var_dir=str(tmp_path / "var"))
    missing = {c.name.split(" (")[0] for c in failed_musts(checklist(s, sqlite_store))}
    assert missing == {
        "public URL",
        "From domain",
        "shop's physical address",
        "no demo identities in the database",
    }


def test_guard_lists_what_to_fix_and_allows_the_override(sqlite_store: Any, tmp_path: Path) -> None:
    make_shop(sqlite_store, customers=5)
    s = Settings(var_dir=str(tmp_path / "var"), templates_dir=str(ROOT / "templates"))
    d = find_campaign(ROOT / "templates", "weekly-picks")
    assert guard_send(s, sqlite_store, d, "outbox://x") == []  # never a real inbox: no guard
    with pytest.raises(ConfigError) as info:
        guard_send(s, sqlite_store, d, "smtp://user:pw@127.0.0.1:2525")
    text = str(info.value)
    for expected in ("not https", "shop.example.com is a reserved", "shop_address", "demo addresses",
                     "--allow-unsafe-send", "retain doctor"):  # fmt: skip
        assert expected in text
    assert "pw" not in text.replace("https", "")  # the DSN's password is masked
    overridden = guard_send(s.with_overrides(allow_unsafe_send=True), sqlite_store, d, "smtp://127.0.0.1:1")
    assert len(overridden) == 4


def test_campaign_from_is_checked(sqlite_store: Any, tmp_path: Path) -> None:
    _own_customers(sqlite_store)
    s = Settings(var_dir=str(tmp_path / "var"), **GOOD)
    d = find_campaign(ROOT / "templates", "weekly-picks")
    assert guard_send(s, sqlite_store, d, "smtp://127.0.0.1:1") == []
    from dataclasses import replace

    with pytest.raises(ConfigError, match="weekly-picks's from:.*reserved"):
        guard_send(s, sqlite_store, replace(d, from_="Shop <a@shop.example.org>"), "smtp://127.0.0.1:1")


def _cli(monkeypatch: pytest.MonkeyPatch, s: Settings, store: Any, tmp_path: Path) -> None:
    for key, value in settings_to_env(s).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RETAIN_DATABASE_URL", store.engine.url.render_as_string(hide_password=False))
    (tmp_path / "empty.toml").write_text("")
    monkeypatch.setenv("RETAIN_CONFIG", str(tmp_path / "empty.toml"))


def test_cli_send_refuses_then_override_is_recorded_on_the_run(
    store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s = shop_settings(tmp_path)  # loopback public_url, example.com From, demo identities
    make_shop(store, customers=20)
    train_model(store, s)
    _cli(monkeypatch, s, store, tmp_path)
    with SmtpSink() as sink:
        assert main(["send", "weekly-picks", "--sender", sink.dsn, "--run-key", "k1"]) == 1
        err = capsys.readouterr().err
        assert "refusing to send weekly-picks" in err and "Traceback" not in err
        assert sum(sink.counts.values()) == 0 and store.list_runs() == []  # nothing sent, no run
        assert (
            main(["send", "weekly-picks", "--sender", sink.dsn, "--run-key", "k1", "--allow-unsafe-send"])
            == 0
        )
        assert "go-live checks overridden" in capsys.readouterr().err
        assert sum(sink.counts.values()) > 0
    run = store.get_run("k1", "weekly-picks")
    assert run.unsafe_send is not None and "public URL" in run.unsafe_send
    assert main(["run", "show", "k1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unsafe_send"] == run.unsafe_send
    # the outbox is not a real transport: no guard, nothing recorded
    assert (
        main(["send", "weekly-picks", "--sender", "outbox://" + str(tmp_path / "ob"), "--run-key", "k2"]) == 0
    )
    assert store.get_run("k2", "weekly-picks").unsafe_send is None


def test_env_override(
    sqlite_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    s = shop_settings(tmp_path)
    make_shop(sqlite_store, customers=8)
    train_model(sqlite_store, s)
    _cli(monkeypatch, s, sqlite_store, tmp_path)
    monkeypatch.setenv("RETAIN_ALLOW_UNSAFE_SEND", "1")
    with SmtpSink() as sink:
        assert main(["send", "weekly-picks", "--sender", sink.dsn, "--run-key", "e"]) == 0
    assert sqlite_store.get_run("e", "weekly-picks").unsafe_send


def test_doctor_exit_status_and_checklist(
    sqlite_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _own_customers(sqlite_store)
    bad = Settings(var_dir=str(tmp_path / "var"), quiet_hours="", frequency_cap=0)
    _cli(monkeypatch, bad, sqlite_store, tmp_path)
    assert main(["doctor"]) == 1
    text = capsys.readouterr().out
    for item in ("public URL", "DKIM", "From domain", "physical address", "secret key backed up", "quiet hours",
                 "frequency cap", "sender rate limit", "not ready"):  # fmt: skip
        assert item in text, item
    good = Settings(
        var_dir=str(tmp_path / "var"),
        dkim_selector="sel",
        dkim_domain="paperpine.co.uk",
        dkim_private_key_path=str(Path(__file__).parent / "data" / "dkim_test_key.pem"),
        send_rate=10,
        **GOOD,
    )
    backup(good, tmp_path / "keys-backup.json")
    _cli(monkeypatch, good, sqlite_store, tmp_path)
    assert main(["doctor", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ready"] is True and all(c["ok"] for c in report["checks"])


def test_scheduler_refuses_to_start_with_a_real_sender_and_unsafe_setup(
    sqlite_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_shop(sqlite_store, customers=4)  # demo identities, demo settings
    s = shop_settings(tmp_path, sender="smtp://127.0.0.1:1")
    _cli(monkeypatch, s, sqlite_store, tmp_path)
    assert main(["schedule", "run"]) == 1
    err = capsys.readouterr().err
    assert "refusing to start the scheduler" in err and "public URL" in err and "Traceback" not in err


def test_rate_limit_may_come_from_the_sender_dsn(tmp_path: Path) -> None:
    def rate(**kw: Any) -> Any:
        s = Settings(var_dir=str(tmp_path / "var"), **kw)
        return next(c for c in checklist(s) if c.name == "sender rate limit")

    assert not rate(sender="smtp://mail.shop.co.uk:587").ok
    assert rate(sender="smtp://mail.shop.co.uk:587?rate=12").detail == "12 messages/s"
    assert rate(send_rate=5).ok
