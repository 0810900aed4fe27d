"""Store <-> recommender glue: train, load, fingerprints, bad input, and the CLI commands."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from campaigns.config import Settings
from campaigns.errors import ModelError, NotFoundError
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn, ReturnIn
from campaigns.training import evaluate_store, load_recommender, train_model

START = datetime(2024, 1, 1)


def shop_batch(tag: str = "") -> ImportBatch:
    """Two taste groups: even customers buy mugs, odd customers buy tea; customer c9 only returned."""
    batch = ImportBatch(source="test")
    for k in range(8):
        sku = f"{tag}SKU{k}"
        price = None if k == 7 else 2.0 + k
        category = None if k == 6 else ("mugs" if k % 2 == 0 else "tea")
        batch.products[sku] = ProductIn(sku, f"Product {k}", price, "GBP", category=category)
    for c in range(10):
        batch.customers[f"c{c}"] = CustomerIn(f"c{c}", email=f"c{c}@example.com")
    order = 0
    for c in range(9):
        for day in range(6):
            sku_k = (c % 2) + 2 * ((c + day) % 3)
            order += 1
            lines = [(f"{tag}SKU{sku_k}", 1, 2.0), (f"{tag}SKU{(sku_k + 2) % 8}", 2, 3.0)]
            if c == 0:  # c0 bought only products 0 and 2 of the mugs group: 4 and 6 are for discovery
                if day > 1:
                    continue
                lines = lines[:1]
            batch.orders[f"o{order}"] = OrderIn(
                f"o{order}", f"c{c}", START + timedelta(days=5 * day + c), "GBP", lines
            )
    batch.returns.append(ReturnIn("r1", 1, "c9", f"{tag}SKU1", 1, 2.0, START + timedelta(days=3)))
    return batch


@pytest.fixture
def shop(sqlite_store):
    sqlite_store.write_import(shop_batch())
    return sqlite_store


def settings_for(tmp_path: Path) -> Settings:
    return Settings(var_dir=str(tmp_path / "var"), model_path=str(tmp_path / "model" / "m"))


TINY = {"als": {"factors": 4, "iterations": 5}, "half_life_days": 30}


def test_train_then_load_recommends_with_catalogue_names(shop, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    path = train_model(shop, settings, model="blend", params=TINY)
    assert path.exists() and path.with_suffix(".json").exists()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["model"] == "blend" and meta["data_fingerprint"] and meta["half_life_days"] == 30
    rec = load_recommender(settings, shop)
    customers = {c.external_id: c.id for batch in shop.iter_customers() for c in batch}
    got = rec.recommend([customers["c0"], customers["c9"]], n=2)
    assert got[0].block("discover") is not None and got[0].block("discover").items
    assert any(it.reason.startswith("Because you bought Product ") for it in got[0].block("discover").items)
    # a customer with only returns is unknown to the model: stated popular fallback
    assert got[1].blocks[0].name == "popular" and got[1].blocks[0].fallback
    assert customers["c9"] in shop.returns_only_customer_ids()


def test_missing_corrupt_and_foreign_models(shop, tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    with pytest.raises(NotFoundError, match="run `retain train`"):
        load_recommender(settings, shop)
    train_model(shop, settings, params=TINY)
    from campaigns.store import Store

    other = Store.open(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        other.write_import(shop_batch(tag="X"))
        with pytest.raises(ModelError, match="another database"):
            load_recommender(settings, other)
    finally:
        other.close()
    (tmp_path / "model" / "m.npz").write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match="corrupt"):
        load_recommender(settings, shop)


def test_empty_history_is_a_clear_error(sqlite_store, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="empty history"):
        train_model(sqlite_store, settings_for(tmp_path))


def test_bad_params_are_a_model_error(shop, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="unknown"):
        train_model(shop, settings_for(tmp_path), params={"als": {"factorz": 2}})
    # a weight that is not a number (hand-written --params JSON) is named, not a ValueError traceback
    for params, name in (
        ({"trend_weight": "x"}, "trend_weight"),
        ({"als_weight": None}, "als_weight"),
        ({"repeat": {"own": "1"}}, "repeat.own"),
        ({"popular_weight": float("nan")}, "popular_weight"),
    ):
        with pytest.raises(ModelError, match=f"blend '{name}' must be a finite number"):
            train_model(shop, settings_for(tmp_path), params=params)
    # every part's numeric parameters go through the same check; a weight so large that float32 sums
    # overflow, or a NaN trend smoothing, would otherwise rank by inf/NaN scores without a word
    for params, message in (
        ({"trend_weight": 1e39}, "blend 'trend_weight' must be between -1e\\+06 and 1e\\+06, not 1e\\+39"),
        ({"trend": {"smoothing": float("nan")}}, "trend 'smoothing' must be a finite number, not nan"),
        ({"trend": {"recent_days": "x"}}, "trend 'recent_days' must be a finite number, not 'x'"),
        ({"trend": {"prior_days": 0}}, "trend 'prior_days' must be positive, not 0"),
        ({"popular": {"window_days": None}}, "popular 'window_days' must be a finite number, not None"),
        ({"ease": {"l2": float("inf")}}, "EASE 'l2' must be a finite number, not inf"),
    ):
        with pytest.raises(ModelError, match=message):
            train_model(shop, settings_for(tmp_path), params=params)


def test_evaluate_store_reports_every_model_for_both_protocols(shop) -> None:
    result = evaluate_store(shop, cutoff=START + timedelta(days=20), holdout_days=30, params=TINY, budget=20)
    assert set(result["protocols"]) == {"discover", "repeat", "next_basket"}
    for protocol, models in result["protocols"].items():
        assert {
            "popular (all time)",
            "personal",
            "als",
            "itemknn",
            "ease",
            "tifuknn",
            "blend",
            "shipped",
        } <= set(models)
        assert all(0.0 <= m["ndcg@10"] <= 1.0 for m in models.values())
        paired = result["paired"][protocol]
        base = paired["baseline"]
        assert models[base]["ndcg@10"] == max(
            models[b]["ndcg@10"]
            for b in ("popular (all time)", "popular (30 days)", "popular (7 days)", "personal")
        )
        assert paired[base]["diff"] == 0.0
        diff = paired["shipped"]["diff"]
        assert diff == pytest.approx(models["shipped"]["ndcg@10"] - models[base]["ndcg@10"], abs=1e-9)


def test_cli_train_and_evaluate_json(shop, tmp_path: Path, monkeypatch, capsys) -> None:
    from campaigns.cli import main

    db_url = f"sqlite:///{tmp_path / 'retain.db'}"  # the file behind the sqlite_store fixture
    monkeypatch.setenv("RETAIN_MODEL_PATH", str(tmp_path / "cli-model"))
    monkeypatch.chdir(tmp_path)
    params = json.dumps(TINY)
    assert main(["--db", db_url, "train", "--params", params]) == 0
    assert (tmp_path / "cli-model.npz").exists()
    capsys.readouterr()
    assert main(["--db", db_url, "evaluate", "--json", "--cutoff", "2024-01-21", "--params", params]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload["protocols"]) == {"discover", "repeat", "next_basket"}
    repeat = payload["protocols"]["repeat"]
    assert repeat["test_window"] == {"start": "2024-01-21T00:00:00", "end": "2024-02-20T00:00:00", "days": 30}
    assert repeat["test_customers"] > 0 and repeat["strongest_baseline"] in repeat["models"]
    assert {"ndcg@10", "hr@10", "p@10", "map@10", "coverage"} <= set(repeat["models"]["blend"])
    assert set(repeat["models"]["shipped"]["vs_baseline"]) == {"diff", "se"}
    # 20 days of history before the cutoff: no 30-day validation window, so the defaults ship, saying why
    assert payload["shipped"]["choice"] == {}
    assert any("no validation window" in note for note in payload["shipped"]["notes"])
    assert main(["--db", db_url, "evaluate", "--cutoff", "not-a-date"]) == 1
    assert "ISO date" in capsys.readouterr().err
    assert main(["--db", db_url, "train", "--params", "{bad"]) == 1


def test_train_selects_per_shop_by_default_and_model_show_explains(
    shop, tmp_path: Path, monkeypatch, capsys
) -> None:
    from campaigns.cli import main

    db_url = f"sqlite:///{tmp_path / 'retain.db'}"
    monkeypatch.setenv("RETAIN_MODEL_PATH", str(tmp_path / "sel-model"))
    monkeypatch.chdir(tmp_path)
    assert main(["--db", db_url, "train", "--budget", "20"]) == 0
    meta = json.loads((tmp_path / "sel-model.json").read_text())
    selection = meta["selection"]
    assert selection["budget"] == 20.0 and meta["database"]
    for block, choice in selection["choice"].items():
        rows = [r for r in selection["table"] if r["block"] == block]
        assert choice["validation_ndcg@10"] >= max(r["mean"] for r in rows if r["baseline"])
    capsys.readouterr()
    assert main(["--db", db_url, "model", "show"]) == 0
    shown = capsys.readouterr().out
    assert "discover: " in shown and "validation" in shown
    assert main(["--db", db_url, "model", "show", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["selection"]["choice"] == selection["choice"]
    monkeypatch.setenv("RETAIN_MODEL_PATH", str(tmp_path / "none"))
    assert main(["--db", db_url, "model", "show"]) == 1
    assert "run `retain train`" in capsys.readouterr().err


def test_a_model_file_belongs_to_its_database(shop, tmp_path: Path) -> None:
    """Training for another database refuses to overwrite this one's model (unless forced) and never
    reuses its tuning."""
    from campaigns.store import Store
    from campaigns.training import database_identity

    settings = settings_for(tmp_path)
    tuned = {"params": {"als": {"factors": 3, "iterations": 2}}, "half_life_days": 45.0}
    train_model(shop, settings, model="blend", tuning=tuned)
    meta = json.loads((tmp_path / "model" / "m.json").read_text())
    assert meta["tuning"] == tuned and meta["database"] == database_identity(shop)
    other = Store.open(f"sqlite:///{tmp_path / 'other.db'}")
    other.write_import(shop_batch("X"))
    with pytest.raises(ModelError, match="belongs to another database"):
        train_model(other, settings, params=TINY)
    assert json.loads((tmp_path / "model" / "m.json").read_text())["database"] == database_identity(shop)
    train_model(other, settings, model="blend", force=True)
    meta = json.loads((tmp_path / "model" / "m.json").read_text())
    assert meta["database"] == database_identity(other)
    assert "tuning" not in meta and meta["half_life_days"] == 60.0  # the first database's tuning stayed there
    # the same database trained again keeps its own tuning
    train_model(other, settings, model="blend", tuning=tuned)
    train_model(other, settings, model="blend")
    assert json.loads((tmp_path / "model" / "m.json").read_text())["tuning"] == tuned
