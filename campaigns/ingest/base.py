"""What every importer shares: opening a CSV safely, checking its header, collecting problems.

An importer reads the file once, turning each row into customers/products/orders of an
:class:`~campaigns.store.records.ImportBatch` or into a problem ``file:line: column: what is wrong``.
Nothing is written until the whole file has been read: with problems and no ``--skip-invalid``
the import raises :class:`ImportValidationError` and the database is untouched; with
``--skip-invalid`` the rejected rows go to a rejects CSV with their reasons.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import time
import unicodedata
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, cast

from campaigns import csvsafe
from campaigns.errors import ImportValidationError
from campaigns.store.records import ImportBatch, ImportSummary

#: characters never allowed in names/emails: C0/C1 controls (CR, LF, NUL, ...), DEL, and
#: unicode line/paragraph separators
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# a pragmatic address check: one @, no spaces/controls, a dotted domain; the real test is delivery.
# Domains may be internationalized (bücher.example): checked by their IDNA (punycode) form.
_LOCAL = re.compile(r"^[^@\s<>(),;:\"\[\]\\]+$")
_DOMAIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$")
#: date formats tried only to suggest a --date-format when a date does not parse (day-first first)
DATE_HINTS = (
    "%d-%m-%Y", "%d/%m/%Y", "%d.%m.%Y", "%m/%d/%Y", "%m-%d-%Y", "%Y/%m/%d", "%d/%m/%Y %H:%M", "%m/%d/%Y %H:%M",
    "%d-%m-%Y %H:%M", "%d.%m.%Y %H:%M", "%d/%m/%Y %H:%M:%S", "%m/%d/%Y %H:%M:%S", "%d/%m/%y", "%m/%d/%y",
    "%Y%m%d", "%d %b %Y", "%b %d, %Y",
)  # fmt: skip

Progress = Callable[[int], None]
#: the largest quantity one order line may have (either sign); larger is a typo or a hostile file
MAX_QUANTITY = 1_000_000
#: the largest whole number a column may hold (ids, counts): beyond it databases overflow
MAX_INTEGER = 2**53
#: the largest amount (price, total) accepted
MAX_NUMBER = 1e12


class RowError(ValueError):
    """One problem with one field of one row (becomes ``file:line: column: message``)."""

    def __init__(self, column: str, message: str) -> None:
        self.column = column
        self.message = message
        super().__init__(f"{column}: {message}")


class OutOfRange(RowError):
    """A value that parses but is outside what an import accepts (a quantity of 1e30, the year 9999)."""


@dataclass
class Problems:
    """Collects row problems; keeps the first 20 for the message and every rejected row for the rejects CSV."""

    path: str
    shown: list[str] = field(default_factory=list)
    total: int = 0
    rejected_rows: list[tuple[int, list[str], str]] = field(default_factory=list)
    keep_rows: bool = False

    def add(self, line: int, error: RowError, row: Sequence[str] | None = None) -> None:
        self.total += 1
        if len(self.shown) < ImportValidationError.MAX_SHOWN:
            self.shown.append(f"{self.path}:{line}: {error.column}: {error.message}")
        if self.keep_rows:
            self.rejected_rows.append((line, list(row or []), f"{error.column}: {error.message}"))

    def add_file_error(self, message: str) -> None:
        self.total += 1
        self.shown.append(f"{self.path}: {message}")

    def raise_if_any(self) -> None:
        if self.total:
            raise ImportValidationError(self.path, self.shown, self.total)


@dataclass
class CsvFile:
    """An opened CSV: its header (BOM stripped) and an iterator of (line number, row).

    ``count`` is how many rows the iterator has handed out so far (blank lines are not rows).
    """

    path: str
    header: list[str]
    rows: Iterator[tuple[int, list[str]]]
    handle: IO[str]
    count: int = 0

    def close(self) -> None:
        self.handle.close()

    def well_formed(self, problems: Problems) -> Iterator[tuple[int, list[str]]]:
        """The rows with as many fields as the header; every other row becomes a problem."""
        width = len(self.header)
        for line, row in self.rows:
            if len(row) != width:
                problems.add(line, RowError("(row)", f"has {len(row)} fields, the header has {width}"), row)
                continue
            yield line, row


def open_csv(
    path: str | Path, *, delimiter: str = ",", encoding: str = "utf-8", header: bool = True
) -> CsvFile:
    """Open a (possibly gzipped) CSV. Raises ImportValidationError for a missing, empty or undecodable file.

    Line numbers are physical line numbers of the file (header = line 1), so quoted values with
    embedded newlines still point at the right place (a row is named by the line it starts on). ``header=False`` (a file without a header line):
    the columns are named "1", "2", ... and line 1 is data.
    """
    p = Path(path)
    name = str(path)
    if not p.exists():
        raise ImportValidationError(name, [f"{name}: file not found"])
    if p.is_dir():
        raise ImportValidationError(name, [f"{name}: is a directory, expected a CSV file"])
    raw = _open_binary(p)
    try:
        head = raw.read(4)
    except (OSError, EOFError) as exc:
        raw.close()
        raise ImportValidationError(name, [f"{name}: cannot read: {exc}"]) from None
    raw.close()
    raw = _open_binary(p)
    # utf-8-sig strips a BOM; errors surface as a clear problem below, not a traceback
    text = io.TextIOWrapper(
        raw, encoding="utf-8-sig" if encoding.lower() in {"utf-8", "utf8"} else encoding, newline=""
    )
    if not head:
        text.close()
        raise ImportValidationError(name, [f"{name}: the file is empty (expected a header line)"])
    reader = csv.reader(text, delimiter=delimiter, strict=False)
    try:
        top = next(reader)
    except StopIteration:
        text.close()
        raise ImportValidationError(name, [f"{name}: the file is empty (expected a header line)"]) from None
    except UnicodeDecodeError as exc:
        text.close()
        raise ImportValidationError(
            name, [f"{name}:1: not valid {encoding} ({exc.reason}); re-export as UTF-8"]
        ) from None
    except csv.Error as exc:
        text.close()
        raise ImportValidationError(name, [f"{name}:1: malformed CSV: {exc}"]) from None
    except (EOFError, OSError, zlib.error) as exc:
        text.close()
        raise ImportValidationError(name, [_damaged(name, reader.line_num, exc)]) from None
    first: list[str] | None = None if header else top
    columns = [h.strip() for h in top] if header else [str(i) for i in range(1, len(top) + 1)]

    def rows() -> Iterator[tuple[int, list[str]]]:
        if first is not None:
            csv_file.count += 1
            yield 1, first
        try:
            end = reader.line_num
            for row in reader:
                # a quoted value may span lines: a row is named by the line it starts on
                start, end = end + 1, reader.line_num
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                csv_file.count += 1
                yield start, row
        except UnicodeDecodeError as exc:
            raise ImportValidationError(
                name,
                [f"{name}:{reader.line_num + 1}: not valid {encoding} ({exc.reason}); re-export as UTF-8"],
            ) from None
        except csv.Error as exc:
            raise ImportValidationError(name, [f"{name}:{reader.line_num}: malformed CSV: {exc}"]) from None
        except (EOFError, OSError, zlib.error) as exc:
            raise ImportValidationError(name, [_damaged(name, reader.line_num, exc)]) from None

    csv_file = CsvFile(name, columns, iter(()), text)
    csv_file.rows = rows()
    return csv_file


def require_columns(
    csv_file: CsvFile,
    required: Sequence[str],
    *,
    delimiter: str = ",",
    options: dict[str, str] | None = None,
) -> dict[str, int]:
    """Map column name -> index; raise naming every missing column (and hint at a wrong delimiter).

    ``options`` (a generic import's field -> column mapping) makes the message name the ``--map`` entry.
    """
    index = {name: i for i, name in enumerate(csv_file.header)}
    missing = [c for c in required if c not in index]
    if missing:
        hint = ""
        if options:
            named = [f"{f}={c}" for f, c in options.items() if c in missing]
            hint = f" — named by --map {','.join(named)}: fix --map to use the file's column names"
        if len(csv_file.header) == 1:
            for d in (";", "\t", "|", ","):
                if d != delimiter and d in csv_file.header[0]:
                    hint = f" — the header looks {d!r}-delimited: pass --delimiter {d!r}"
                    break
        msg = (
            f"{csv_file.path}:1: missing column(s) {', '.join(repr(m) for m in missing)}; "
            f"found {', '.join(repr(h) for h in csv_file.header[:12])}{hint}"
        )
        csv_file.close()
        raise ImportValidationError(csv_file.path, [msg])
    return index


# -- field parsers: each raises RowError(column, message) ------------------------------------


def clean_text(value: str, column: str, *, required: bool = False, max_len: int = 500) -> str | None:
    """Strip; reject control characters (CR/LF ...); None when empty and not required."""
    value = value.strip()
    if not value:
        if required:
            raise RowError(column, "is empty")
        return None
    if _CONTROL.search(value):
        raise RowError(column, f"contains control characters (CR/LF/...): {value[:40]!r}")
    if len(value) > max_len:
        raise RowError(column, f"is longer than {max_len} characters")
    return unicodedata.normalize("NFC", value)


def parse_email(value: str, column: str, *, required: bool = False) -> str | None:
    """The address as written, its domain lower-cased; an internationalized domain is kept as written
    (``ivy@bücher.example``; the sender encodes it as IDNA). RowError when it is not an address."""
    text = clean_text(value, column, required=required, max_len=320)
    if text is None:
        return None
    local, at, domain = text.rpartition("@")
    domain = domain.lower()
    try:
        ascii_domain = domain if domain.isascii() else domain.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_domain = ""
    if not at or not _LOCAL.match(local) or not _DOMAIN.match(ascii_domain):
        raise RowError(column, f"is not a valid email address: {text[:60]!r}")
    return f"{local}@{domain}"


def identity_key(email: str) -> str:
    """The customer identity of an address: the whole address lower-cased (``BEN@x.com`` = ``ben@x.com``)."""
    return email.lower()


def check_range(number: float, column: str, text: str, limit: float = MAX_NUMBER) -> None:
    """RowError unless ``-limit <= number <= limit`` (a value no shop writes: a typo or a hostile file)."""
    if not -limit <= number <= limit:
        raise OutOfRange(column, f"is out of range (at most {limit:,.0f}): {text.strip()[:30]!r}")


def check_stock(qty: int, column: str) -> int:
    """An inventory count a database integer column holds (at most 2,147,483,647 either way)."""
    check_range(qty, column, str(qty), 2**31 - 1)
    return qty


def parse_int(value: str, column: str, limit: float = MAX_INTEGER) -> int:
    """A whole number within ``limit`` either way (quantities pass ``MAX_QUANTITY``)."""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        raise RowError(column, f"is not a number: {text[:30]!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise RowError(column, f"is not a finite number: {text[:30]!r}")
    check_range(number, column, text, limit)
    if number != int(number):
        raise RowError(column, f"is not a whole number: {text[:30]!r}")
    return int(number)


def parse_float(value: str, column: str) -> float:
    text = value.strip().replace(",", "") if value.count(",") and value.count(".") else value.strip()
    text = text.replace(",", ".")
    try:
        number = float(text)
    except ValueError:
        raise RowError(column, f"is not a number: {value.strip()[:30]!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise RowError(column, f"is not a finite number: {value.strip()[:30]!r}")
    check_range(number, column, value)
    return number


@dataclass(frozen=True)
class DateRange:
    """The dates an import accepts: ``earliest`` .. ``now + days_ahead`` (naive UTC)."""

    earliest: datetime = datetime(1970, 1, 1)
    days_ahead: int = 365

    def latest(self) -> datetime:
        from datetime import UTC, timedelta

        try:
            return datetime.now(UTC).replace(tzinfo=None) + timedelta(days=self.days_ahead)
        except OverflowError:  # a huge import_max_days_ahead: no upper bound
            return datetime.max


_DATE_RANGE: ContextVar[DateRange | None] = ContextVar("import_date_range", default=None)


@contextmanager
def date_range(earliest: str | datetime, days_ahead: int) -> Iterator[DateRange]:
    """Imports inside this block accept dates from ``earliest`` to ``days_ahead`` days from now
    (settings ``import_earliest_date`` and ``import_max_days_ahead``; the CLI sets them)."""
    first = earliest if isinstance(earliest, datetime) else datetime.fromisoformat(earliest)
    bounds = DateRange(first.replace(tzinfo=None), days_ahead)
    token = _DATE_RANGE.set(bounds)
    try:
        yield bounds
    finally:
        _DATE_RANGE.reset(token)


def check_date(when: datetime, column: str, text: str) -> datetime:
    """RowError for a date before the earliest accepted or too far in the future."""
    bounds = _DATE_RANGE.get() or DateRange()
    if when < bounds.earliest:
        raise OutOfRange(
            column,
            f"is before {bounds.earliest:%Y-%m-%d}: {text.strip()[:40]!r} "
            f"(a typo? set import_earliest_date to import older orders)",
        )
    latest = bounds.latest()
    if when > latest:
        raise OutOfRange(
            column,
            f"is more than {bounds.days_ahead} days in the future: {text.strip()[:40]!r} "
            f"(a typo or a wrong --date-format? set import_max_days_ahead to allow it)",
        )
    return when


def date_format_hint(text: str) -> str:
    """``"; pass --date-format '%d-%m-%Y'"`` for a value one of DATE_HINTS reads (both readings when a
    day-first and a month-first format fit), else a general pointer to ``--date-format``."""
    fits = []
    for fmt in DATE_HINTS:
        try:
            datetime.strptime(text, fmt)
        except ValueError:
            continue
        fits.append(fmt)
        if len(fits) == 2:
            break
    if not fits:
        return "; pass --date-format with its strptime format, e.g. --date-format '%d/%m/%Y %H:%M'"
    if len(fits) == 2:
        return f"; pass --date-format '{fits[0]}' (or '{fits[1]}' if the month comes first)"
    return f"; pass --date-format '{fits[0]}'"


def parse_datetime(value: str, column: str, fmt: str | None = None, *, hint: bool = False) -> datetime:
    """ISO 8601 (default) or a strptime format; timezone-aware values are converted to naive UTC.

    ``hint`` adds a suggested ``--date-format`` to the error (for importers that have the option).
    """
    text = value.strip()
    if not text:
        raise RowError(column, "is empty")
    try:
        parsed = datetime.strptime(text, fmt) if fmt else datetime.fromisoformat(text)
    except ValueError:
        expected = f"--date-format {fmt}" if fmt else "ISO 8601, e.g. 2011-12-09 12:50:00"
        more = date_format_hint(text) if hint else ""
        raise RowError(column, f"is not a date ({expected}): {text[:40]!r}{more}") from None
    if parsed.tzinfo is not None:
        from datetime import UTC

        try:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01 00:00 +01:00 has no UTC time
            raise OutOfRange(column, f"is out of range: {text[:40]!r}") from None
    return check_date(parsed, column, text)


def write_rejects(path: Path, header: Sequence[str], rejected: list[tuple[int, list[str], str]]) -> None:
    """The rejected rows as CSV: the original columns plus ``_line`` and ``_reason``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csvsafe.writer(fh)  # a rejected =HYPERLINK(...) name must not run in a spreadsheet
        w.writerow(["_line", "_reason", *header])
        for line, row, reason in rejected:
            w.writerow([line, reason, *row])


@dataclass
class ParseResult:
    batch: ImportBatch
    rows_read: int
    set_aside: Counter[str]
    problems: Problems
    header: list[str]
    notes: list[str] = field(default_factory=list)  # what the import decided that the user should know


def parsed_file(
    csv_file: CsvFile,
    batch: ImportBatch,
    problems: Problems,
    set_aside: Counter[str] | None = None,
    notes: list[str] | None = None,
) -> ParseResult:
    """What an importer read from ``csv_file``; a file with a header and no rows is a problem."""
    if csv_file.count == 0:
        problems.add_file_error("has a header but no rows")
    return ParseResult(batch, csv_file.count, set_aside or Counter(), problems, csv_file.header, notes or [])


def finish_import(
    store: object,
    path: str | Path,
    parsed: ParseResult,
    *,
    skip_invalid: bool,
    rejects_path: Path | None,
    started: float,
    progress: Progress | None = None,
) -> ImportSummary:
    """Raise on problems (all-or-nothing) or write the rejects file; then write the batch in one transaction."""
    problems = parsed.problems
    rejects_written: str | None = None
    if problems.total and not skip_invalid:
        problems.raise_if_any()
    if problems.total and skip_invalid:
        target = rejects_path or Path(str(path) + ".rejects.csv")
        write_rejects(target, parsed.header, problems.rejected_rows)
        rejects_written = str(target)
    counts = store.write_import(parsed.batch)  # type: ignore[attr-defined]
    return ImportSummary(
        path=str(path),
        source=parsed.batch.source,
        rows_read=parsed.rows_read,
        customers_added=counts.customers_added,
        products_added=counts.products_added,
        orders_added=counts.orders_added,
        order_lines_added=counts.order_lines_added,
        returns_added=counts.returns_added,
        set_aside=dict(parsed.set_aside),
        rejected=problems.total,
        rejects_path=rejects_written,
        seconds=round(time.perf_counter() - started, 2),
        products_updated=counts.products_updated,
        events=dict(counts.events),
        notes=tuple(parsed.notes),
    )


def _damaged(name: str, line: int, exc: BaseException) -> str:
    """The message for a file that cannot be read to its end (a truncated or corrupt .gz, a read error)."""
    what = "truncated or corrupt compressed file" if name.endswith(".gz") else "read error"
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return (
        f"{name}:{line + 1}: the file cannot be read past line {line} ({what}: {detail}); "
        f"nothing was imported — download or export the file again"
    )


def _open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when it ends in .gz."""
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")
