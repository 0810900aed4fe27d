"""Unique coupon codes: generated and pool codes assigned once per recipient and run (a resumed run re-uses
them), an exhausted pool pausing the run before any message without a code, bad pool files refused naming
the line, a formula-safe export, and redemptions matched from a real Shopify orders export's Discount Code."""

from __future__ import annotations

import csv
import email
import io
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from campaigns.cli import main
from campaigns.coupons import ALPHABET, CouponSpec, read_pool, safe_cell, write_export
from campaigns.definition import find_campaign, parse_campaign
from campaigns.errors import ImportValidationError, TemplateError
from campaigns.ingest import import_shopify
from campaigns.report import campaign_report
from campaigns.runner import run_campaign
from campaigns.senders import memory
from campaigns.status import RunStatus
from tests.csv_files import read_rows, write_rows
from tests.synthetic import ROOT, make_shop, shop_settings
from tests.test_report import T0, write_ledger
from tests.test_web import StubRecommender

ORDERS = Path(__file__).parent / "fixtures" / "shopify_orders_export.csv"


def promo_source(coupons: str) -> str:
    source = (ROOT / "templates" / "emails" / "vip-early-access.mjml").read_text()
    source = source.replace("name: vip-early-access", "name: spring").replace(
        "segment: vip", "segment: active-buyers"
    )
    return source.replace("segment: active-buyers\n", f"segment: active-buyers\ncoupons: {coupons}\n")


@pytest.fixture
def shop(store: Any, tmp_path: Path) -> dict[str, Any]:
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    settings = shop_settings(tmp_path, templates_dir=str(templates), batch_size=10, holdout_share=0.0)
    make_shop(store, customers=60)
    memory.clear()
    return {"store": store, "settings": settings, "templates": templates, "tmp": tmp_path}


def campaign(shop: dict[str, Any], coupons: str) -> Any:
    (shop["templates"] / "emails" / "spring.mjml").write_text(promo_source(coupons))
    shutil.copy(ROOT / "templates/emails/vip-early-access.txt", shop["templates"] / "emails" / "spring.txt")
    return find_campaign(shop["templates"], "spring")


def send(shop: dict[str, Any], definition: Any, run_key: str = "r1") -> Any:
    return run_campaign(
        shop["store"], shop["settings"], definition, recommender=StubRecommender(shop["store"]), run_key=run_key,
        sender="memory://",
    )  # fmt: skip


def html_of(data: bytes) -> str:
    msg = email.message_from_bytes(data)
    return next(
        p.get_payload(decode=True).decode() for p in msg.walk() if p.get_content_type() == "text/html"
    )


# ---------------------------------------------------------------------------- files and front matter


def test_pool_files_plain_and_csv_and_bad_lines(tmp_path: Path) -> None:
    plain = tmp_path / "codes.txt"
    plain.write_text("SPRING-AAAA\nSPRING-BBBB\n\nSPRING-CCCC\n")
    assert read_pool(plain) == ["SPRING-AAAA", "SPRING-BBBB", "SPRING-CCCC"]
    shopify = tmp_path / "discount_codes.csv"
    shopify.write_text("Code,Usage Count\nWELCOME-7Q2K,0\nWELCOME-8R3M,0\n")
    assert read_pool(shopify) == ["WELCOME-7Q2K", "WELCOME-8R3M"]
    bad = tmp_path / "bad.txt"
    bad.write_text("GOOD-CODE1\nspring-aaaa\nSPRING-AAAA\n=cmd|' /C calc'!A0\nab\n")
    with pytest.raises(ImportValidationError) as info:
        read_pool(bad)
    problems = info.value.problems
    assert f"{bad}:3: code 'SPRING-AAAA' repeats line 2" in problems
    assert any(p.startswith(f"{bad}:4: code ") and "malformed" in p for p in problems)
    assert any(p.startswith(f"{bad}:5: code 'ab' is malformed") for p in problems)


def test_front_matter_coupons() -> None:
    d = parse_campaign(Path("spring.mjml"), promo_source('{prefix: "SPRING-", length: 10}'))
    assert d.coupons == CouponSpec(prefix="SPRING-", length=10)
    assert parse_campaign(Path("spring.mjml"), promo_source("{pool: true}")).coupons == CouponSpec(pool=True)
    with pytest.raises(TemplateError, match="coupons.length must be between 6 and 32"):
        parse_campaign(Path("spring.mjml"), promo_source("{length: 40}"))
    weekly = (
        (ROOT / "templates/emails/weekly-picks.mjml")
        .read_text()
        .replace("segment:", "coupons: {length: 8}\nsegment:")
    )
    with pytest.raises(TemplateError, match="'coupons' needs a kind with a promotion"):
        parse_campaign(Path("weekly-picks.mjml"), weekly)


def test_exported_cells_cannot_run_as_formulas() -> None:
    for bad in ("=1+1", "+SUM(A1)", "-A1", "@cmd", "\tx", "\rx"):
        assert safe_cell(bad) == "'" + bad
    assert safe_cell("SPRING-AB12") == "SPRING-AB12"
    assert safe_cell("-2") == "-2"  # a plain number cannot be a formula (campaigns/csvsafe.py)
    rows = list(csv.reader(io.StringIO(write_export([("=HYPERLINK(1)", "ann@x.test")], ("code", "email")))))
    assert rows == [["code", "email"], ["'=HYPERLINK(1)", "ann@x.test"]]


# ---------------------------------------------------------------------------- sending


def test_generated_codes_one_per_recipient_reused_on_resume(shop: dict[str, Any]) -> None:
    store = shop["store"]
    definition = campaign(shop, '{prefix: "SPRING-", length: 8}')
    someone = store.get_customer("cust3@example.com")
    pre = store.assign_coupons("spring", "r1", [(someone.id, None)], definition.coupons)  # a crash after this
    summary = send(shop, definition)
    assert summary.sent > 20
    issued = store.issued_coupons("spring")
    codes = [r["code"] for r in issued]
    assert len(codes) == len(set(codes)) == summary.sent  # one per recipient, all different
    assert all(re.fullmatch(rf"SPRING-[{ALPHABET}]{{8}}", c) for c in codes)
    by_email = {r["email"]: r["code"] for r in issued}
    assert by_email["cust3@example.com"] == pre[someone.id]  # the resumed run re-used the assigned code
    for message in memory.outbox():
        html = html_of(message.data)
        mine = by_email[message.rcpt_to]
        assert mine in html and "VIPEARLY20" not in html  # the recipient's own code, not the shared one
        assert not (set(codes) - {mine}) & set(re.findall(r"SPRING-[A-Z0-9]{8}", html))
    again = send(shop, definition)
    assert again.status == RunStatus.COMPLETED and len(store.issued_coupons("spring")) == len(codes)


def test_an_exhausted_pool_stops_before_a_message_without_a_code(
    shop: dict[str, Any], monkeypatch: Any, capsys: Any
) -> None:
    store = shop["store"]
    definition = campaign(shop, "{pool: true}")
    pool = shop["tmp"] / "pool.txt"
    pool.write_text("\n".join(f"POOL-{i:04d}" for i in range(25)) + "\n")
    (shop["tmp"] / "empty.toml").write_text("")
    monkeypatch.setenv("RETAIN_CONFIG", str(shop["tmp"] / "empty.toml"))
    monkeypatch.setenv("RETAIN_TEMPLATES_DIR", str(shop["templates"]))
    url = store.engine.url.render_as_string(hide_password=False)
    assert main(["--db", url, "coupons", "import", "spring", str(pool)]) == 0
    assert "25 codes added to the pool of spring; 25 free" in capsys.readouterr().err
    # the same codes again: refused whole, naming the code
    assert main(["--db", url, "coupons", "import", "spring", str(pool)]) == 1
    assert "'POOL-0000' is already in Retain" in capsys.readouterr().err
    paused = send(shop, definition)
    assert paused.status == RunStatus.PAUSED and "coupon pool of spring has 5 free codes" in (
        paused.reason or ""
    )
    sent = list(memory.outbox())
    assert len(sent) == 20  # two batches of ten had codes; the third was never built
    for message in sent:
        assert re.search(r"POOL-\d{4}", html_of(message.data))
    more = shop["tmp"] / "more.csv"
    more.write_text("Code\n" + "\n".join(f"MORE-{i:04d}" for i in range(100)) + "\n")
    assert main(["--db", url, "coupons", "import", "spring", str(more)]) == 0
    done = send(shop, definition)
    assert done.status == RunStatus.COMPLETED
    addresses = [m.rcpt_to for m in memory.outbox()]
    assert len(addresses) == len(set(addresses)) == len(store.issued_coupons("spring"))
    capsys.readouterr()
    assert main(["--db", url, "coupons", "export", "spring"]) == 0
    exported = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(exported) == len(addresses) and exported[0]["code"] == "POOL-0000"
    assert set(exported[0]) >= {"code", "customer", "email", "run", "redeemed_by_order"}


# ---------------------------------------------------------------------------- redemptions (Shopify export)


def test_redemptions_from_a_shopify_export(store: Any, tmp_path: Path) -> None:
    header, rows = read_rows(ORDERS)
    for row in rows:
        if row["Name"] == "#1009" and row["Financial Status"]:
            row["Discount Code"] = "spring-kq7m, SPRING10"  # Shopify joins several codes; case differs
    export = write_rows(tmp_path / "orders_export.csv", header, rows)
    store.import_coupon_pool("spring", ["SPRING-KQ7M", "SPRING-ZZ22"])
    import_shopify(store, export, currency="EUR")
    mia = store.get_customer("mia@example.com")
    ada_id = store.get_customer("ada@example.com").id
    codes = store.assign_coupons("spring", "r1", [(mia.id, "b"), (ada_id, "a")], CouponSpec(pool=True))
    assert codes == {mia.id: "SPRING-KQ7M", ada_id: "SPRING-ZZ22"}
    write_ledger(store, "spring", "r1", [(mia.id, "sent", "b", T0), (ada_id, "sent", "a", T0)])
    assert store.coupon_redemptions("spring") == {"b": 1}
    issued = {r["code"]: r["redeemed_by_order"] for r in store.issued_coupons("spring")}
    assert issued == {"SPRING-KQ7M": "shopify:#1009", "SPRING-ZZ22": None}
    report = campaign_report(store, "spring", currency="EUR")
    assert report.variants["b"].redemptions == 1 and report.variants["a"].redemptions == 0
