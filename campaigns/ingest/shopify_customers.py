"""Importer for Shopify's customers export (Admin > Customers > Export): names, consent, tags, address.

Columns as Shopify writes them (the older export's names are accepted too): ``Customer ID``, ``First Name``,
``Last Name``, ``Email``, ``Accepts Email Marketing`` (older: ``Accepts Marketing``), ``Default Address
Province Code`` / ``Default Address Country Code`` (older: ``Province Code`` / ``Country Code``), ``Tags``.
Every other column (company, street, phone, SMS consent, Total Spent, Note ...) is read past.

- The customer is the whole address lower-cased, the same identity as the orders export, so the two files
  describe the same people. A row without email is set aside (``no_email``): Retain cannot write to it or
  match it to an order. The address is kept as written.
- **Consent**: ``Accepts Email Marketing`` yes/no, source ``shopify:customers-export``, dated by a consent
  date column when the file has one (``Email Marketing Consent Updated At``), else by the file's own time
  (its modification time: when Shopify wrote the export, the decision was as stated). A decision newer
  than the stored one replaces it; an older one does not.
- **Tags** replace the customer's tags (comma-separated, trimmed, first spelling kept); segments select on
  them (``tags: [vip]``).
- **Timezone** from the default address's country and province codes (campaigns/ingest/timezones.py).
- Shopify prefixes long numbers with an apostrophe so spreadsheets keep them as text (``'7210448301122``);
  the apostrophe is dropped.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from campaigns.ingest.base import (
    ParseResult,
    Problems,
    RowError,
    clean_text,
    finish_import,
    identity_key,
    open_csv,
    parse_datetime,
    parse_email,
    parsed_file,
    require_columns,
)
from campaigns.ingest.orders import OrderAssembler, parse_consent
from campaigns.ingest.timezones import timezone_for
from campaigns.store.records import ImportSummary

SOURCE = "shopify-customers"
CONSENT_SOURCE = "shopify:customers-export"
ALIASES = {
    "consent": ("Accepts Email Marketing", "Accepts Marketing"),
    "consent_at": ("Email Marketing Consent Updated At", "Accepts Email Marketing Updated At"),
    "province": ("Default Address Province Code", "Province Code", "Default Address Province", "Province"),
    "country": ("Default Address Country Code", "Country Code", "Default Address Country", "Country"),
    "first": ("First Name",),
    "last": ("Last Name",),
    "tags": ("Tags",),
}


def split_tags(value: str) -> list[str]:
    """``"vip, Wholesale,vip"`` -> ``["vip", "Wholesale"]`` (case-insensitive duplicates dropped)."""
    seen: dict[str, str] = {}
    for tag in value.split(","):
        tag = tag.strip().lstrip("'")
        if tag and tag.lower() not in seen:
            seen[tag.lower()] = tag[:255]
    return list(seen.values())


def parse_shopify_customers(path: str | Path, *, keep_rejects: bool = False) -> ParseResult:
    csv_file = open_csv(path)  # raises for a missing or empty file
    file_time = datetime.fromtimestamp(Path(path).stat().st_mtime, UTC).replace(tzinfo=None)
    idx = require_columns(csv_file, ["Email"])
    header = csv_file.header
    col = {k: next((header.index(c) for c in names if c in header), None) for k, names in ALIASES.items()}
    problems = Problems(str(path), keep_rows=keep_rejects)
    set_aside: Counter[str] = Counter()
    asm = OrderAssembler(SOURCE, consent_source=CONSENT_SOURCE)
    first_line: dict[str, int] = {}

    def cell(row: list[str], key: str) -> str:
        i = col[key]
        return row[i].strip().lstrip("'") if i is not None and i < len(row) else ""

    consent_name = header[col["consent"]] if col["consent"] is not None else ""
    try:
        for line, row in csv_file.well_formed(problems):
            try:
                email = parse_email(row[idx["Email"]], "Email")
                if email is None:
                    set_aside["no_email"] += 1
                    continue
                key = identity_key(email)
                if key in first_line:
                    set_aside["same_address_again_later_row_wins"] += 1
                first_line.setdefault(key, line)
                consent = parse_consent(cell(row, "consent"), consent_name) if cell(row, "consent") else None
                when = file_time
                if cell(row, "consent_at"):
                    when = parse_datetime(cell(row, "consent_at"), str(header[col["consent_at"]]))  # type: ignore[index]
                country = clean_text(cell(row, "country"), "Default Address Country Code", max_len=100)
                province = clean_text(cell(row, "province"), "Default Address Province Code", max_len=100)
                asm.add_customer(
                    key,
                    email=email,
                    first_name=clean_text(cell(row, "first"), "First Name", max_len=200),
                    last_name=clean_text(cell(row, "last"), "Last Name", max_len=200),
                    country=country,
                    region=province,
                    timezone=timezone_for(country, province),
                    consent=consent,
                    consent_at=when,
                    tags=split_tags(cell(row, "tags")) if col["tags"] is not None else None,
                )
            except RowError as exc:
                problems.add(line, exc, row)
    finally:
        csv_file.close()
    return parsed_file(csv_file, asm.batch, problems, set_aside)


def import_shopify_customers(
    store: object, path: str | Path, *, skip_invalid: bool = False, rejects_path: Path | None = None
) -> ImportSummary:
    """Validate then import the customers export in one transaction (nothing written on errors)."""
    started = time.perf_counter()
    parsed = parse_shopify_customers(path, keep_rejects=skip_invalid)
    return finish_import(
        store, path, parsed, skip_invalid=skip_invalid, rejects_path=rejects_path, started=started
    )
