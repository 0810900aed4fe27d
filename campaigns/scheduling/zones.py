"""Recipient-local time: which timezone a customer receives a "09:00 local" campaign in.

A campaign scheduled with ``timezone: recipient`` gets one job per timezone present among the
customers (plus the shop's); each job's cron runs in that zone and sends to that zone's customers
only (like Mailchimp's Timewarp). Customers without a timezone, or with one Python does not know,
use ``settings.shop_timezone``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


@lru_cache(maxsize=1024)
def is_known_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def effective_zone(customer_zone: str | None, shop_zone: str) -> str:
    """The zone a customer is scheduled in: theirs when known, else the shop's."""
    zone = (customer_zone or "").strip()
    return zone if zone and is_known_zone(zone) else shop_zone


def audience_zones(counts: Mapping[str | None, int], shop_zone: str) -> tuple[list[str], list[str]]:
    """``(zones to schedule, notes)`` from ``{customer timezone: count}`` (see ``customer_timezones``).

    The shop's zone is always included; unknown zone names are folded into it with a note.
    """
    zones = {shop_zone}
    notes: list[str] = []
    for zone, n in sorted(counts.items(), key=lambda kv: str(kv[0])):
        if zone is None or not zone.strip():
            continue
        if is_known_zone(zone.strip()):
            zones.add(zone.strip())
        else:
            notes.append(
                f"{n} customer(s) have unknown timezone {zone!r}: they receive in the shop's ({shop_zone})"
            )
    return sorted(zones), notes
