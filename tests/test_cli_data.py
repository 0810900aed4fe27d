"""The `retain` command end to end: the full Online Retail import, stats --json, clean errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DATA_FILE, ROOT


def retain(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    full_env.pop("RETAIN_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-c", "from campaigns.cli import run; run()", *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_full_online_retail_import_gives_the_reference_figures(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'retain.db'}"
    imported = retain("--db", db, "import", "online-retail", str(DATA_FILE), cwd=tmp_path)
    assert imported.returncode == 0, imported.stderr
    assert "no_customer_id" in imported.stdout and "135,080" in imported.stdout
    stats = retain("--db", db, "stats", "--json", cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    kpis = json.loads(stats.stdout)
    assert kpis["customers"] == 4334
    assert kpis["orders"] == 18402
    assert kpis["order_lines"] == 396337
    assert kpis["products"] == 3659
    assert round(kpis["repeat_purchase_rate"], 3) == 0.653
    assert round(kpis["average_order_value"], 2) == 476.09
    assert kpis["retention_period"] == "2011-11"
    assert 0 < kpis["retention_rate"] < 1


def test_default_database_is_sqlite_under_var(tmp_path: Path) -> None:
    result = retain("db", "upgrade", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "retain.db").exists()


def test_bad_input_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("InvoiceNo,StockCode\n1,2\n")
    result = retain("import", "online-retail", str(bad), cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    assert "missing column(s)" in result.stderr and "nothing was imported" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--db", "nosuchdriver://x/y", "stats"), "cannot open"),
        (("--db", "postgresql+psycopg://postgres@127.0.0.1:1/none", "stats"), "cannot connect"),
        (("stats", "--period", "fortnight"), "--period must be one of"),
        (("import", "orders", "x.csv", "--format", "generic"), "--format generic needs --map"),
        (
            ("import", "orders", "x.csv", "--format", "shopify", "--basket-by", "customer,date"),
            "only for --format generic",
        ),
        (
            ("import", "orders", "x.csv", "--format", "generic", "--map", "customer=a,sku=b,date=c"),
            "--basket-by customer,date",
        ),
        (
            ("import", "catalog", "x.csv", "--format", "shopify", "--url-template", "{shop_url}/{x}"),
            "unknown placeholder",
        ),
        (("import", "catalog", "x.csv", "--format", "generic"), "--format generic needs --map"),
    ],
)
def test_usage_problems_are_clear(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    result = retain(*args, cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_file_names_the_setting(tmp_path: Path) -> None:
    (tmp_path / "retain.toml").write_text('holdout_share = "lots"\n')
    result = retain("stats", cwd=tmp_path)
    assert result.returncode == 1
    assert "retain.toml: setting 'holdout_share' must be float" in result.stderr


def test_help_lists_the_commands() -> None:
    result = retain("--help", cwd=ROOT)
    assert result.returncode == 0
    for command in ("import", "stats", "db"):
        assert command in result.stdout


GROCERIES = Path("/work/shared/data/groceries/groceries.csv.gz")


@pytest.mark.skipif(not GROCERIES.exists(), reason=f"{GROCERIES} is not on this machine")
def test_groceries_baskets_from_the_command_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'retain.db'}"
    imported = retain(
        "--db", db, "import", "orders", str(GROCERIES), "--format", "generic", "--no-header",
        "--map", "customer=1,date=2,product_name=3", "--date-format", "%d-%m-%Y",
        "--basket-by", "customer,date", "--aggregate-duplicates", cwd=tmp_path,
    )  # fmt: skip
    assert imported.returncode == 0, imported.stderr
    assert "duplicate_lines_added_up" in imported.stdout and "no prices" in imported.stdout
    kpis = json.loads(retain("--db", db, "stats", "--json", cwd=tmp_path).stdout)
    assert (kpis["customers"], kpis["orders"], kpis["products"]) == (3898, 14963, 167)
    assert kpis["orders_without_prices"] == 14963 and kpis["average_order_value"] is None
    human = retain("--db", db, "stats", cwd=tmp_path).stdout
    assert "orders without prices" in human
