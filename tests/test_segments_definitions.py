"""segments.yaml loading, rule validation and resolution: clear errors with file:line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from campaigns.cli import main
from campaigns.clock import reference_now
from campaigns.config import Settings
from campaigns.errors import ConfigError, NotFoundError, TemplateError
from campaigns.segments import load_segments, resolve_segment
from campaigns.segments.definitions import RuleError, parse_score, validate_rules
from tests.conftest import ROOT


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "segments.yaml"
    path.write_text(text)
    return path


def test_load_normalizes_rules(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "loyal:\n  description: Loyal\n  rules:\n    orders: {min: 3}\n    rfm: {r: '>=4', m: 2-3}\n"
        "    country: France\n    drifting: true\n",
    )
    seg = load_segments(path)["loyal"]
    assert seg.description == "Loyal"
    assert seg.rules == {
        "orders": {"min": 3.0},
        "rfm": {"r": (4, 5), "m": (2, 3)},
        "country": {"in": ["France"]},
        "drifting": {"factor": 1.5, "gap": "median"},
    }


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ("a:\n  rules:\n    orders: {min: 1}\n    colour: red\n", ":4:", "unknown rule 'colour'"),
        ("a:\n  rules:\n    orders:\n      min: many\n", ":4:", "orders.min: must be a number"),
        ("a:\n  rules:\n    orders: {least: 1}\n", ":3:", "unknown bound 'least'"),
        ("a:\n  rules:\n    spend: {min: 10, max: 5}\n", ":3:", "greater than max"),
        ("a:\n  rules:\n\n    rfm:\n      r: '>=6'\n", ":5:", "rfm.r: must be a score 1-5"),
        ("a:\n  rules:\n    rfm: {x: 1}\n", ":3:", "unknown score 'x'"),
        ("a:\n  rules:\n    rfm: {r: '<1'}\n", ":3:", "matches no score"),
        ("a:\n  rules:\n    top_spenders_pct: 0\n", ":3:", "percentage"),
        ("a:\n  rules:\n    first_time_buyers: yes please\n", ":3:", "true or false"),
        ("a:\n  rules:\n    bought: {within_days: 3}\n", ":3:", "needs 'sku' and/or 'category'"),
        ("a:\n  rules:\n    bought: {sku: []}\n", ":3:", "non-empty string or list"),
        ("a:\n  rules:\n    drifting: {gap: mode}\n", ":3:", "median, mean"),
        ("a:\n  rules:\n    country: {in: [UK], out: [FR]}\n", ":3:", "unknown key 'out'"),
        ("a:\n  description: x\n  audience: y\n", ":3:", "unknown key 'audience'"),
        ("Bad Name:\n  rules: {}\n", ":1:", "lower-case"),
        ("a: [1, 2]\n", ":1:", "must be a mapping"),
        ("a:\n  rules: {orders: {min: 1}\n", ":3:", "not valid YAML"),
        ("", ":1:", "expected a mapping"),
    ],
)
def test_bad_file_names_file_and_line(tmp_path: Path, text: str, where: str, fragment: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_segments(path)
    message = str(info.value)
    assert message.startswith(str(path) + where), message
    assert fragment in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="segments file not found"):
        load_segments(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (4, (4, 4)),
        ("5", (5, 5)),
        (">=4", (4, 5)),
        (">4", (5, 5)),
        ("<=2", (1, 2)),
        ("< 3", (1, 2)),
        ("2-4", (2, 4)),
    ],
)
def test_parse_score(text: Any, expected: tuple[int, int]) -> None:
    assert parse_score(("rfm", "r"), text) == expected


def test_validate_rules_rejects_non_mapping() -> None:
    with pytest.raises(RuleError):
        validate_rules(["orders"])


def test_resolve_names_inline_and_default() -> None:
    segments = load_segments(ROOT / "segments.yaml")
    assert resolve_segment("vip", segments).rules == {"top_spenders_pct": 10.0}
    assert resolve_segment(None, segments).name == "all-buyers"
    inline = resolve_segment({"orders": {"min": 2}}, segments)
    assert inline.rules == {"orders": {"min": 2.0}}
    based = resolve_segment({"segment": "vip", "country": ["France"]}, segments)
    assert based.rules == {"top_spenders_pct": 10.0, "country": {"in": ["France"]}}


def test_resolve_errors() -> None:
    segments = load_segments(ROOT / "segments.yaml")
    with pytest.raises(NotFoundError, match=r"unknown segment 'vipp' \(known: active-buyers, all-buyers"):
        resolve_segment("vipp", segments)
    with pytest.raises(TemplateError, match=r"^emails/x.mjml: segment.orders.min: must be a number"):
        resolve_segment({"orders": {"min": "two"}}, segments, source="emails/x.mjml")
    with pytest.raises(TemplateError, match="already set by segment 'vip'"):
        resolve_segment({"segment": "vip", "top_spenders_pct": 5}, segments)
    with pytest.raises(TemplateError, match="name or a mapping"):
        resolve_segment(42, segments)  # type: ignore[arg-type]


class _FakeStore:
    def __init__(self, last: datetime | None) -> None:
        self.last = last

    def catalog_counts(self) -> Any:
        return type("Counts", (), {"last_order_at": self.last})()


def test_reference_now() -> None:
    last = datetime(2011, 12, 9, 12, 50)
    assert reference_now(Settings(as_of="latest-order"), _FakeStore(last)) == datetime(2011, 12, 10, 12, 50)
    assert reference_now(Settings(as_of="2011-06-01"), _FakeStore(last)) == datetime(2011, 6, 1)
    assert reference_now(Settings(as_of="2011-06-01T10:00+02:00"), None) == datetime(2011, 6, 1, 8, 0)
    real = reference_now(Settings(as_of=""), None)
    assert abs((real - datetime.now(UTC).replace(tzinfo=None)).total_seconds()) < 60
    empty = reference_now(Settings(as_of="latest-order"), _FakeStore(None))
    assert empty.year >= 2024
    with pytest.raises(ConfigError, match="setting 'as_of'"):
        reference_now(Settings(as_of="last tuesday"), None)


def test_cli_lists_segments_and_shows_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from campaigns.store import Store
    from tests.test_segments import segment_batch

    db = f"sqlite:///{tmp_path / 'r.db'}"
    store = Store.open(db)
    store.write_import(segment_batch())
    store.close()
    seg_file = str(ROOT / "segments.yaml")
    assert main(["--db", db, "segments", "--file", seg_file, "--as-of", "2024-01-01", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    sizes = {s["name"]: s["size"] for s in listed["segments"]}
    assert sizes["all-buyers"] == 5 and sizes["lapsed"] == 1
    argv = ["--db", db, "segment", "drifting-away", "--file", seg_file, "--as-of", "2024-01-01"]
    assert main([*argv, "--sample", "2", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["size"] == 3
    assert [m["external_id"] for m in shown["sample"]] == ["b", "c"]
    assert main(argv) == 0
    assert "3 customers as of 2024-01-01" in capsys.readouterr().out
    assert main(["--db", db, "segment", "nope", "--file", seg_file]) == 1
    assert "unknown segment 'nope'" in capsys.readouterr().err
    bad = write(tmp_path, "a:\n  rules:\n    colour: red\n")
    assert main(["--db", db, "segments", "--file", str(bad)]) == 1
    assert f"{bad}:3:" in capsys.readouterr().err
