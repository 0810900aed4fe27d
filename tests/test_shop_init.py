"""A new shop is not the demo: `retain init`, the `enabled:` key, the demo config bound to its database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from campaigns.cli import main
from campaigns.config import load_settings
from campaigns.definition import load_campaigns
from campaigns.shop_init import CURRENCY_MARKER, disable

ROOT = Path(__file__).resolve().parent.parent
GROCERIES = Path("/work/shared/data/groceries/groceries.csv.gz")
SHOPIFY_ORDERS = Path(__file__).parent / "fixtures" / "shopify_orders_export.csv"


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Path:
    for name in list(os.environ):
        if name.startswith("RETAIN_") and name != "RETAIN_REQUIRE_SERVICES":
            monkeypatch.delenv(name)
    folder = tmp_path / "paper-pine"
    assert main(["init", str(folder), "--name", "Paper & Pine"]) == 0
    assert "all enabled: false" in capsys.readouterr().out
    monkeypatch.setenv("RETAIN_CONFIG", str(folder / "retain.toml"))
    return folder


def test_init_makes_an_own_config_with_the_real_clock(shop: Path) -> None:
    s = load_settings(shop / "retain.toml", env={})
    assert s.as_of == "" and s.demo_database == ""  # the real clock, not the demo's latest-order
    assert s.shop_name == "Paper & Pine"
    assert s.resolved_database_url() == f"sqlite:///{shop / 'var' / 'retain.db'}"
    assert Path(s.templates_dir) == shop / "templates"
    assert (shop / "var" / "secret.key").stat().st_mode & 0o777 == 0o600
    definitions = load_campaigns(shop / "templates")
    assert len(definitions) >= 6 and not any(d.enabled for d in definitions)
    assert main(["init", str(shop)]) == 1  # never over an existing shop


def test_disable_sets_or_replaces_the_key() -> None:
    assert "enabled: false" in disable("---\nname: a\nkind: promotion\n---\nbody")
    assert disable("---\nname: a\nenabled: true\n---\nx").count("enabled") == 1
    assert disable("---\nname: a\nenabled: true\n---\nx").startswith("---\nname: a\nenabled: false\n---")


def test_disabled_campaign_is_not_sent(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["import", "orders", str(SHOPIFY_ORDERS), "--format", "shopify"]) == 0
    capsys.readouterr()
    assert main(["send", "we-miss-you"]) == 1
    err = capsys.readouterr().err
    assert "is disabled (enabled: false" in err and "Traceback" not in err
    path = shop / "templates" / "emails" / "we-miss-you.mjml"
    path.write_text(path.read_text().replace("enabled: false", "enabled: true"))
    assert main(["send", "we-miss-you"]) == 1  # now enabled: it gets past the check (and needs a model)
    err = capsys.readouterr().err
    assert "is disabled" not in err and "retain train" in err


def test_schedule_sync_honours_enabled(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from campaigns.scheduling.sync import sync_jobs

    class Jobs:
        def __init__(self) -> None:
            self.added: list[str] = []

        def get_jobs(self) -> list[Any]:
            return []

        def add_job(self, *args: Any, id: str, **kwargs: Any) -> None:
            self.added.append(id)

    from campaigns.store import Store

    s = load_settings(shop / "retain.toml", env={})
    store = Store.open(s.resolved_database_url())
    try:
        jobs = Jobs()
        report = sync_jobs(jobs, store, s)
        assert jobs.added == [] and any("weekly-picks: enabled: false" in n for n in report.notes)
        path = shop / "templates" / "emails" / "weekly-picks.mjml"
        path.write_text(path.read_text().replace("enabled: false", "enabled: true"))
        report = sync_jobs(jobs, store, s)
        campaigns = [j for j in jobs.added if j.startswith("campaign:")]
        assert campaigns and all(j.startswith("campaign:weekly-picks@") for j in campaigns)
    finally:
        store.close()


def test_currency_comes_from_the_first_import_shopify(shop: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert CURRENCY_MARKER in (shop / "retain.toml").read_text()
    assert main(["import", "orders", str(SHOPIFY_ORDERS), "--format", "shopify"]) == 0
    assert "currency EUR written" in capsys.readouterr().out
    assert load_settings(shop / "retain.toml", env={}).currency == "EUR"
    assert CURRENCY_MARKER not in (shop / "retain.toml").read_text()


@pytest.mark.skipif(not GROCERIES.exists(), reason="the groceries data set lives in ../shared")
def test_currency_for_a_file_without_one_must_be_named(
    shop: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["import", "orders", str(GROCERIES), "--format", "generic", "--no-header", "--map",
            "customer=1,date=2,product_name=3", "--date-format", "%d-%m-%Y", "--basket-by", "customer,date",
            "--aggregate-duplicates"]  # fmt: skip
    assert main(args) == 1
    assert "this shop has no currency yet" in capsys.readouterr().err
    assert main([*args, "--currency", "DKK"]) == 0
    assert load_settings(shop / "retain.toml", env={}).currency == "DKK"


def test_demo_config_warns_for_another_database_and_blocks_go_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RETAIN_CONFIG", str(ROOT / "retain.toml"))
    monkeypatch.setenv("RETAIN_VAR_DIR", str(tmp_path / "var"))
    assert main(["--db", f"sqlite:///{tmp_path / 'mine.db'}", "doctor"]) == 1
    captured = capsys.readouterr()
    assert "the demo's retain.toml" in captured.err and "retain init DIR" in captured.err
    assert "the shop's own configuration" in captured.out


def test_demo_prints_next_commands_that_run() -> None:
    from campaigns.demo import retain_command

    cmd = retain_command()
    if cmd != "retain":  # printed as a path: exactly what the user can type here
        assert Path(cmd).resolve() == (Path(sys.executable).parent / "retain").resolve()
    result = subprocess.run([cmd, "send", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--dry-run" in result.stdout
