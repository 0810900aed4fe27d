"""CSV that is safe to open in a spreadsheet: every CSV Retain writes goes through :func:`writer`.

OWASP "CSV injection": a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
may be run as a formula by Excel, LibreOffice or Google Sheets (``=HYPERLINK(...)`` in a customer's name
would land in a dry-run report or a rejects file). Such a cell is written with a leading ``'``, which
spreadsheets show as text; a plain number (``-3``, ``+4.95``) is left alone, since it cannot be a formula
and a rejects file should keep the value it rejected. Non-string values (ints, floats) pass unchanged.

    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csvsafe.writer(fh)
        w.writerow(["_line", "name"])
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import IO, Any

#: the first characters a spreadsheet may treat as the start of a formula (OWASP)
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PLAIN_NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")


def safe_cell(value: Any) -> Any:
    """``value`` with a leading ``'`` when it is text a spreadsheet could run as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _PLAIN_NUMBER.match(value):
        return "'" + value
    return value


class SafeWriter:
    """``csv.writer`` whose rows pass through :func:`safe_cell`."""

    def __init__(self, fh: IO[str], **fmt: Any) -> None:
        self._w = csv.writer(fh, **fmt)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._w.writerow([safe_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def writer(fh: IO[str], **fmt: Any) -> SafeWriter:
    """A CSV writer on ``fh`` that neutralises formula cells (the only way Retain writes CSV)."""
    return SafeWriter(fh, **fmt)
