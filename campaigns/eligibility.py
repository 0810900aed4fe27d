"""Who in a segment may be mailed now: address, suppression, consent, frequency cap, holdout, quiet hours.

:func:`judge_batch` gives one :class:`Verdict` per customer, checking in this order (the first
failing check is the reason)::

    no_email         the customer has no address at all (e.g. a basket file without emails)
    invalid_address  not a routable address
    suppressed       on the suppression list (unsubscribed, hard bounce, complaint, manual) - always,
                     for transactional mail too
    no_consent       marketing mail without consent (or the soft opt-in rule, when enabled)
    frequency_cap    already settings.frequency_cap marketing emails within
                     settings.frequency_window_days (marketing mail only; 0 = no cap), counting
                     messages sent, being sent, claimed or of unknown fate in other runs; the claim
                     counts again atomically (campaigns/store/ledger.py), so concurrent runs hold it
    holdout          in the campaign's deterministic control group (status "holdout")
    quiet_hours      local time inside settings.quiet_hours: status "deferred" with defer_until

The holdout is decided after the address, suppression, consent and cap checks, so the control
group is drawn from exactly the customers who would otherwise have been mailed - the two groups
are comparable when measuring uplift. A holdout customer stays in the holdout whatever the hour.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from campaigns.errors import ConfigError
from campaigns.store.records import CustomerRecord

ELIGIBLE, HOLDOUT, SKIPPED, DEFERRED = "eligible", "holdout", "skipped", "deferred"
REASONS = (
    "no_email",
    "invalid_address",
    "suppressed",
    "no_consent",
    "frequency_cap",
    "holdout",
    "quiet_hours",
)

#: top-level domains that can never receive mail (RFC 2606 / RFC 6761 / mDNS)
UNROUTABLE_TLDS = frozenset({"invalid", "localhost", "local"})
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_TLD = re.compile(r"^(?:[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59})$")


@dataclass(frozen=True)
class Verdict:
    """What to do with one customer in this run; ``reason`` is set unless eligible."""

    customer: CustomerRecord
    status: str  # eligible | holdout | skipped | deferred
    reason: str | None = None
    defer_until: datetime | None = None  # naive UTC, for quiet hours


def is_valid_address(email: str | None) -> bool:
    """A syntactically valid, routable ``local@domain.tld`` (ASCII local part; no IP literals, no quoted
    parts). An internationalized domain (``bücher.example``) is checked in its IDNA form, the form it is
    sent in."""
    if not email or len(email) > 254 or email != email.strip():
        return False
    local, at, domain = email.rpartition("@")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return False
    if not at or not local or len(local) > 64 or not _LOCAL_PART.match(local):
        return False
    labels = domain.rstrip(".").split(".") if not domain.endswith("..") else [""]
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels):
        return False
    tld = labels[-1]
    return bool(_TLD.match(tld)) and tld.lower() not in UNROUTABLE_TLDS


def holdout_bucket(campaign: str, customer_id: int) -> float:
    """A stable number in [0, 1) from sha256(campaign, customer id); the same on every machine."""
    digest = hashlib.sha256(f"{campaign}\x00{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def in_holdout(campaign: str, customer_id: int, share: float) -> bool:
    return share > 0 and holdout_bucket(campaign, customer_id) < share


def parse_quiet_hours(spec: str) -> tuple[int, int] | None:
    """``"21-8"`` -> (21, 8); empty or equal hours -> None (no quiet hours)."""
    if not spec or not spec.strip():
        return None
    parts = spec.split("-")
    if len(parts) != 2 or not all(p.strip().isdigit() and 0 <= int(p) <= 23 for p in parts):
        raise ConfigError(f"setting 'quiet_hours' must look like '21-8' (local hours), got {spec!r}")
    start, end = int(parts[0]), int(parts[1])
    return None if start == end else (start, end)


def quiet_until(now: datetime, zone: ZoneInfo, hours: tuple[int, int] | None) -> datetime | None:
    """When quiet hours end (naive UTC), or None if ``now`` (naive UTC) is outside them in ``zone``."""
    if hours is None:
        return None
    start, end = hours
    local = now.replace(tzinfo=UTC).astimezone(zone)
    h = local.hour
    quiet = (h >= start or h < end) if start > end else (start <= h < end)
    if not quiet:
        return None
    day = local.date() if h < end else local.date() + timedelta(days=1)
    resume = datetime.combine(day, time(end), tzinfo=zone)
    return resume.astimezone(UTC).replace(tzinfo=None)


def _zone(name: str | None, cache: dict[str | None, ZoneInfo], fallback: ZoneInfo) -> ZoneInfo:
    if name not in cache:
        try:
            cache[name] = ZoneInfo(name) if name else fallback
        except (ZoneInfoNotFoundError, ValueError):
            cache[name] = fallback  # an unknown zone in the data: the shop's zone is the best guess
    return cache[name]


def has_consent(customer: CustomerRecord, soft_opt_in: bool) -> bool:
    """Explicit consent; or, with soft opt-in, a buyer with no recorded decision (consent_source unset)."""
    if customer.marketing_consent:
        return True
    return soft_opt_in and customer.consent_source is None


def judge_batch(
    store: Any,
    settings: Any,
    customers: list[CustomerRecord],
    *,
    campaign: str,
    now: datetime,
    holdout_share: float,
    marketing: bool = True,
    run_id: int | None = None,
) -> list[Verdict]:
    """One verdict per customer, in input order (see the module docstring for the checks).

    Makes one suppression query and (for marketing mail with a cap) one frequency-cap query per
    batch. ``now`` is naive UTC; ``marketing=False`` (transactional follow-ups) skips the consent
    and frequency-cap checks but never the suppression list. ``run_id``: this run's own rows do not
    count toward the cap (a resumed run).
    """
    if not 0.0 <= holdout_share < 1.0:
        raise ConfigError(f"holdout share must be in [0, 1), got {holdout_share}")
    suppressed = store.suppressed_emails(c.email for c in customers if c.email)
    sends: dict[int, int] = {}
    cap = settings.frequency_cap if marketing else 0
    if cap > 0:
        since = now - timedelta(days=settings.frequency_window_days)
        sends = store.marketing_sends_since([c.id for c in customers], since, exclude_run=run_id)
    hours = parse_quiet_hours(settings.quiet_hours)
    shop_zone = ZoneInfo(settings.shop_timezone)
    zones: dict[str | None, ZoneInfo] = {}
    verdicts = []
    for c in customers:
        if not (c.email or "").strip():
            verdicts.append(Verdict(c, SKIPPED, "no_email"))
        elif not is_valid_address(c.email):
            verdicts.append(Verdict(c, SKIPPED, "invalid_address"))
        elif c.email is not None and c.email.strip().lower() in suppressed:
            verdicts.append(Verdict(c, SKIPPED, "suppressed"))
        elif marketing and not has_consent(c, settings.soft_opt_in):
            verdicts.append(Verdict(c, SKIPPED, "no_consent"))
        elif cap > 0 and sends.get(c.id, 0) >= cap:
            verdicts.append(Verdict(c, SKIPPED, "frequency_cap"))
        elif in_holdout(campaign, c.id, holdout_share):
            verdicts.append(Verdict(c, HOLDOUT, "holdout"))
        else:
            until = quiet_until(now, _zone(c.timezone, zones, shop_zone), hours)
            if until is not None:
                verdicts.append(Verdict(c, DEFERRED, "quiet_hours", until))
            else:
                verdicts.append(Verdict(c, ELIGIBLE))
    return verdicts
