"""Attribution and the campaign report: last human click within the window, after-send conversion against the
holdout, per variant; a known-answer shop on SQLite and PostgreSQL, ``retain report --json``, and two real
shops (Online Retail, Groceries) checked against a brute-force count of their real orders."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Table

from campaigns.cli import main
from campaigns.models import Delivery
from campaigns.report import campaign_report, last_touch
from campaigns.status import DeliveryStatus
from campaigns.store import Store
from campaigns.store.ledger import LedgerRow
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn
from tests.real_shops import GROCERIES, IMPORTS, ONLINE_RETAIL

BROWSER = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
T0 = datetime(2024, 6, 1, 9, 0)
DEL = cast(Table, Delivery.__table__)


def write_ledger(
    store: Store, campaign: str, run_key: str, rows: list[tuple[int, str, str | None, datetime]]
) -> None:
    """Ledger rows (customer, sent|holdout, variant, when) as a finished run would have left them."""
    run = store.start_run(campaign, run_key, owner=None)
    ids = store.record_deliveries(
        run.id,
        campaign,
        [LedgerRow(c, DeliveryStatus(s), email=f"{c}@x.test", variant=v) for c, s, v, _ in rows],
    )
    with store.transaction() as conn:  # the send times of the scenario (a real run stamps the wall clock)
        for c, status, _v, at in rows:
            values = {"created_at": at, "sent_at": at if status == "sent" else None}
            conn.execute(DEL.update().where(DEL.c.id == ids[c]).values(**values))


def known_shop(store: Store) -> dict[str, int]:
    batch = ImportBatch(source="generic")
    batch.products["S1"] = ProductIn("S1", "Cup", 10.0, "GBP")
    for n in range(1, 11):
        batch.customers[f"K{n}"] = CustomerIn(f"K{n}", f"k{n}@x.test", marketing_consent=True)
        batch.orders[f"old{n}"] = OrderIn(
            f"old{n}", f"K{n}", T0 - timedelta(days=30), "GBP", [("S1", 1, 10.0)]
        )
    after = {  # customer: [(hours after T0, total)]
        1: [(24, 10.0), (24 * 7, 50.0)],  # credited to its click; the second is outside the 5 days
        2: [(0.5, 10.0)],  # before its click: after-send yes, credited no
        3: [(48, 30.0)],  # no click: after-send only
        5: [(96, 20.0)],
        6: [(48, 30.0)],  # its last click before the order was another campaign's
        9: [(24, 40.0)],  # holdout
    }
    for n, orders in after.items():
        for k, (hours, total) in enumerate(orders):
            oid = f"new{n}-{k}"
            batch.orders[oid] = OrderIn(oid, f"K{n}", T0 + timedelta(hours=hours), "GBP", [("S1", 1, total)])
    store.write_import(batch)
    ids = {n: store.get_customer(f"k{n}@x.test").id for n in range(1, 11)}  # type: ignore[union-attr]
    rows = [(ids[n], "sent", "a", T0) for n in (1, 2, 3, 4)] + [
        (ids[n], "sent", "b", T0) for n in (5, 6, 7, 8)
    ]
    rows += [(ids[n], "holdout", None, T0) for n in (9, 10)]
    write_ledger(store, "spring", "r1", rows)

    def click(
        n: int, hours: float, ua: str = BROWSER, campaign: str = "spring", url: str = "https://s/1"
    ) -> None:
        variant = "a" if n <= 4 else "b"
        store.record_click(
            campaign=campaign, run_key="r1", customer_id=ids[n], url=url, variant=variant if campaign == "spring" else None,
            user_agent=ua, clicked_at=T0 + timedelta(hours=hours),
        )  # fmt: skip

    click(1, 1)
    click(2, 2)
    click(2, 1, ua="curl/8.5")  # a scanner: stored, not human
    click(5, 3)
    click(6, 2)
    click(6, 24, campaign="other")
    return ids


def test_known_answers_per_variant(store: Store) -> None:
    known_shop(store)
    report = campaign_report(store, "spring", currency="GBP")
    a, b = report.variants["a"], report.variants["b"]
    assert (report.holdout, report.holdout_ordered) == (2, 1)
    assert (a.recipients, a.human_clicks, a.flagged_clicks, a.clickers, a.click_rate) == (4, 2, 1, 2, 0.5)
    assert (a.orders, a.revenue, a.converted, a.conversion, a.revenue_per_recipient) == (
        1,
        10.0,
        1,
        0.25,
        2.5,
    )
    assert a.ordered_after_send == 3 and a.uplift.uplift == pytest.approx(0.75 - 0.5)
    assert (b.recipients, b.human_clicks, b.clickers, b.orders, b.revenue, b.ordered_after_send) == (
        4,
        2,
        2,
        1,
        20.0,
        2,
    )
    assert b.uplift.ci_low is not None and b.uplift.ci_low < 0 < b.uplift.ci_high  # 2 people: nothing is sure
    wider = campaign_report(store, "spring", days=7, currency="GBP")
    assert wider.variants["a"].orders == 2 and wider.variants["a"].revenue == 60.0  # the day-7 order too
    assert (
        campaign_report(store, "spring", currency="EUR").variants["a"].revenue == 0.0
    )  # never mixes currencies


def test_last_touch_takes_the_latest_click_within_the_window() -> None:
    t = datetime(2024, 1, 10)
    clicks = [(1, "x", None, t), (1, "y", "b", t + timedelta(days=1)), (2, "x", None, t)]
    orders = [
        (10, 1, t + timedelta(days=2), 5.0),  # y is the last touch
        (11, 1, t - timedelta(hours=1), 5.0),  # before any click
        (12, 2, t + timedelta(days=6), 5.0),  # six days after x's click: outside five days
        (13, 3, t, 5.0),  # never clicked
    ]
    assert last_touch(clicks, orders, days=5) == {10: ("y", "b")}
    assert last_touch(clicks, orders, days=6) == {10: ("y", "b"), 12: ("x", None)}


def test_retain_report_json_is_keyed_by_variant(
    sqlite_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    known_shop(sqlite_store)
    (tmp_path / "empty.toml").write_text("")
    monkeypatch.setenv("RETAIN_CONFIG", str(tmp_path / "empty.toml"))
    url = sqlite_store.engine.url.render_as_string(hide_password=False)
    assert main(["--db", url, "report", "spring", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"a", "b"}  # keyed by variant
    assert data["a"]["holdout"] == 2 and data["a"]["window_days"] == 5
    for name, want in {"a": (4, 2, 1, 10.0), "b": (4, 2, 1, 20.0)}.items():
        v = data[name]
        assert (v["recipients"], v["human_clicks"], v["orders"], v["revenue"]) == want
    assert main(["--db", url, "report", "spring"]) == 0
    table = capsys.readouterr().out
    assert "uplift vs holdout" in table and "(+1 flagged)" in table
    assert main(["--db", url, "report", "nothing-sent"]) == 1
    assert "no deliveries yet" in capsys.readouterr().err


# ---------------------------------------------------------------------------- two real shops


@pytest.fixture(scope="module", params=["online-retail", "groceries"])
def real_shop(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    name = request.param
    source = ONLINE_RETAIL if name == "online-retail" else GROCERIES
    if not source.exists():
        pytest.skip(f"{source} is not on this machine")
    root = tmp_path_factory.mktemp(name)
    db = f"sqlite:///{root / 'retain.db'}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RETAIN_")},
        "OPENBLAS_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", "from campaigns.cli import run; run()", "--db", db, *IMPORTS[name]],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    store = Store.open(db)
    yield store
    store.close()


def _brute_force(
    rows: list[tuple[int, str, str | None, datetime]],
    clicks: list[tuple[int, str | None, datetime]],
    orders: list[tuple[int, int, datetime, float]],
    days: int,
) -> dict[str, tuple[int, int, int]]:
    """variant -> (recipients, credited orders, recipients who ordered after the send), by plain loops."""
    window = timedelta(days=days)
    out: dict[str, tuple[int, int, int]] = {}
    for variant in ("a", "b"):
        mine = [r for r in rows if r[2] == variant]
        ids = {r[0] for r in mine}
        credited = 0
        for _oid, cust, at, _total in orders:
            before = [c for c in clicks if c[0] == cust and c[2] <= at]
            if cust in ids and before:
                last = max(before, key=lambda c: c[2])
                credited += last[1] == variant and at - last[2] <= window
        after = sum(any(o[1] == c and s <= o[2] <= s + window for o in orders) for c, _st, _v, s in mine)
        out[variant] = (len(mine), credited, after)
    return out


def test_real_shop_report_matches_a_brute_force_count(real_shop: Store) -> None:
    store = real_shop
    stats = store.catalog_counts()
    assert stats.orders > 1000
    last = max(o[2] for o in store.orders_since(datetime(1990, 1, 1)))
    t0 = (last - timedelta(days=40)).replace(hour=9, minute=0, second=0, microsecond=0)
    recent = store.orders_since(t0 - timedelta(days=60))
    buyers = sorted({cust for _o, cust, at, _t in recent if at < t0})[:400]
    assert len(buyers) >= 200
    rows: list[tuple[int, str, str | None, datetime]] = []
    for i, cust in enumerate(buyers):
        status, variant = ("holdout", None) if i % 10 == 0 else ("sent", "a" if i % 2 else "b")
        rows.append((cust, status, variant, t0))
    write_ledger(store, "real", "r1", rows)
    clicks = []
    for i, (cust, status, variant, _at) in enumerate(rows):
        if status == "sent" and i % 3 == 0:  # a third click, some hours to days after the send
            at = t0 + timedelta(hours=1 + (i * 7) % 100)
            store.record_click(
                campaign="real", run_key="r1", customer_id=cust, url=f"https://shop/p/{i}", variant=variant,
                user_agent=BROWSER, clicked_at=at,
            )  # fmt: skip
            clicks.append((cust, variant, at))
    report = campaign_report(store, "real", days=5, currency=None)
    orders = store.orders_since(t0)
    expected = _brute_force(rows, clicks, orders, 5)
    for variant in ("a", "b"):
        v = report.variants[variant]
        assert (v.recipients, v.orders, v.ordered_after_send) == expected[variant]
        assert v.human_clicks == sum(1 for c in clicks if c[1] == variant)
    # real repeat buyers order again within five days of a send: the after-send counts are not empty
    assert sum(v.ordered_after_send for v in report.variants.values()) > 0
    assert report.holdout == len([r for r in rows if r[1] == "holdout"])


def test_the_dashboard_shows_each_variant(tmp_path: Path) -> None:
    import re

    from tests.test_web import make_shop, preview_client

    store, settings = make_shop(tmp_path)
    try:
        known_shop(store)
        with preview_client(store, settings) as client:
            page = client.get("/dashboard?days=5").text
    finally:
        store.close()
    rows = dict(re.findall(r'<tr data-campaign="spring" data-variant="(\w+)">(.*?)</tr>', page, re.S))
    assert set(rows) == {"a", "b"}
    cells = re.findall(r'<td class="num">(.*?)</td>', rows["a"], re.S)
    assert cells[0] == "4" and cells[1].startswith("2") and "+1 flagged" in cells[1]
    assert cells[2] == "50.0%" and cells[3] == "1" and cells[4] == "25.0%" and "10.00" in cells[5]
