"""Copies of CSV fixtures with some cells changed, for tests that re-import a changed export."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def write_rows(path: Path, header: list[str], rows: list[dict[str, str]]) -> Path:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")
    return path


def edited_copy(
    source: Path,
    target: Path,
    changes: dict[str, dict[str, str]] | Callable[[list[dict[str, str]]], object],
    key: str = "Variant SKU",
) -> Path:
    """``source`` written to ``target`` with the rows whose ``key`` column is in ``changes`` updated (or
    with ``changes(rows)`` applied)."""
    header, rows = read_rows(source)
    if callable(changes):
        changes(rows)
    else:
        for row in rows:
            row.update(changes.get(row[key], {}))
    return write_rows(target, header, rows)
