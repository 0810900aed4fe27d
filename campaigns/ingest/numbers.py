"""Numbers as shops write them: ``4.95``, ``4,95``, ``1,234.50``, ``1.234,50``, ``1 234,50``, ``£4.95``.

A :class:`NumberFormat` knows the file's decimal separator: set (``--decimal .`` / ``--decimal ,``) or
detected. Detection reads values until one can only mean one thing: ``4,95`` (a comma followed by other
than three digits) or ``1.234,50`` (both separators: the last one is the decimal) decide a decimal comma,
and their mirror images a decimal point. Until then a value that could mean either — ``1,234`` or
``1.234`` (one separator followed by exactly three digits) — is refused as ambiguous, never guessed; the
importers look at the file's first rows before importing so a decisive value anywhere there settles it.
A value that contradicts the detected separator is refused naming the line that decided it.

The thousands separator is the other one of ``.``/``,``, or a space, a no-break space or an apostrophe
(``1'234.50``); groups must have three digits. A leading or trailing currency symbol or ISO code is
ignored (``£4.95``, ``4,95 €``, ``EUR 4.95``).
"""

from __future__ import annotations

import re

from campaigns.ingest.base import MAX_NUMBER, RowError, check_range

OPTION = "--decimal"
_AFFIX = re.compile(r"^(?:[£€$¥₹₩₪]|[A-Z]{3})\s*|\s*(?:[£€$¥₹₩₪]|[A-Z]{3})$")
_SPACES = re.compile(r"(?<=\d)[ \u00a0\u202f'’](?=\d{3}(?:\D|$))")
_PLAIN = re.compile(r"^[+-]?\d+$")
_GROUPED = {sep: re.compile(r"^\d{1,3}(?:" + re.escape(sep) + r"\d{3})+$") for sep in ".,"}


class NumberFormat:
    """Parses numbers in one file; ``decimal`` is ``"."``, ``","`` or None (detect)."""

    def __init__(self, decimal: str | None = None) -> None:
        if decimal not in (None, ".", ","):
            raise ValueError(f"{OPTION} must be '.' or ',', got {decimal!r}")
        self.decimal = decimal
        self.fixed = decimal is not None
        self.decided_by: tuple[int, str] | None = None  # (line, value) that set a detected separator

    def _decide(self, decimal: str, line: int, raw: str) -> None:
        if self.decimal is None:
            self.decimal, self.decided_by = decimal, (line, raw)

    def _contradiction(self, column: str, raw: str, wants: str) -> RowError:
        name = "a decimal comma" if wants == "," else "a decimal point"
        if self.fixed:
            why = f"{OPTION} {self.decimal} says otherwise"
        else:
            assert self.decided_by is not None
            line, value = self.decided_by
            why = f"line {line} ({value!r}) uses {'a decimal comma' if self.decimal == ',' else 'a decimal point'}"
        return RowError(column, f"{raw!r} is written with {name} but {why}; pass {OPTION} . or {OPTION} ,")

    def observe(self, text: str, line: int) -> None:
        """Let a value decide the separator if it can (no error for values that do not parse)."""
        if self.decimal is None:
            try:
                self.parse(text, "", line)
            except RowError:
                pass

    def parse(self, text: str, column: str, line: int, limit: float = MAX_NUMBER) -> float:
        """The value as a float; RowError naming ``column`` (and ``--decimal`` where it would help);
        OutOfRange beyond ``MAX_NUMBER`` (``1e30`` or 40 digits is a typo or a hostile file)."""
        value = self._parse(text, column, line)
        check_range(value, column, text, limit)
        return value

    def _parse(self, text: str, column: str, line: int) -> float:
        raw = text.strip()
        body = _AFFIX.sub("", raw)
        if not body:
            raise RowError(column, "is empty")
        sign = ""
        if body[0] in "+-":
            sign, body = body[0], body[1:].lstrip()
        body = _SPACES.sub("", body)
        if _PLAIN.match(body):
            return float(sign + body)
        has_dot, has_comma = "." in body, "," in body
        if has_dot and has_comma:
            decimal = "." if body.rfind(".") > body.rfind(",") else ","
            thousands = "," if decimal == "." else "."
            whole, _, frac = body.rpartition(decimal)
            if not frac.isdigit() or not (_GROUPED[thousands].match(whole) or whole.isdigit()):
                raise RowError(column, f"is not a number: {raw[:30]!r}")
            if self.decimal is not None and self.decimal != decimal:
                raise self._contradiction(column, raw, decimal)
            self._decide(decimal, line, raw)
            return float(sign + whole.replace(thousands, "") + "." + frac)
        if not (has_dot or has_comma):
            raise RowError(column, f"is not a number: {raw[:30]!r}")
        sep = "." if has_dot else ","
        if body.count(sep) > 1:  # only thousands can repeat
            if not _GROUPED[sep].match(body):
                raise RowError(column, f"is not a number: {raw[:30]!r}")
            if self.decimal == sep:
                raise self._contradiction(column, raw, "," if sep == "." else ".")
            self._decide("," if sep == "." else ".", line, raw)
            return float(sign + body.replace(sep, ""))
        whole, _, frac = body.partition(sep)
        if not frac.isdigit() or not (whole.isdigit() or whole == ""):
            raise RowError(column, f"is not a number: {raw[:30]!r}")
        if len(frac) != 3 or not whole or len(whole) > 3 or whole == "0":
            # cannot be a thousands group: the separator is the decimal one
            if self.decimal is not None and self.decimal != sep:
                raise self._contradiction(column, raw, sep)
            self._decide(sep, line, raw)
            return float(f"{sign}{whole or '0'}.{frac}")
        if self.decimal is None:
            other = "," if sep == "." else "."
            raise RowError(
                column,
                f"{raw!r} is ambiguous: {whole}{frac} or {whole}.{frac}; pass {OPTION} {sep} if {sep!r} is "
                f"the decimal separator, or {OPTION} {other} if it groups thousands",
            )
        if self.decimal == sep:
            return float(f"{sign}{whole}.{frac}")
        return float(f"{sign}{whole}{frac}")
