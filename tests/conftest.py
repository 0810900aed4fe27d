"""Shared fixtures: a database on SQLite and on PostgreSQL, server probes, small data.

Tests that need a server use the ``postgres`` / ``redis`` / ``rabbitmq`` marks and the probes below:
absent server -> skip with the reason, unless RETAIN_REQUIRE_SERVICES=1 (CI), then fail.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from campaigns.config import require_services  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA_FILE = ROOT / "data" / "online_retail.csv.gz"


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def need_server(name: str, port: int) -> None:
    """Skip (or fail under RETAIN_REQUIRE_SERVICES=1) when the server is not on 127.0.0.1:port."""
    if _port_open(port):
        return
    message = f"{name} is not running on 127.0.0.1:{port}"
    if require_services():
        pytest.fail(message + " and RETAIN_REQUIRE_SERVICES=1 requires it")
    pytest.skip(message + " (set RETAIN_REQUIRE_SERVICES=1 to make this a failure)")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    need_server("PostgreSQL", 5432)
    from tests.databases import postgres_schema

    with postgres_schema("t_") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Every store test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'retain.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[object]:
    from campaigns.store import Store

    s = Store.open(db_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[object]:
    from campaigns.store import Store

    s = Store.open(f"sqlite:///{tmp_path / 'retain.db'}")
    try:
        yield s
    finally:
        s.close()
