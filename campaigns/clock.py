"""The reference "now" for segments, eligibility and analytics.

``settings.as_of`` chooses it: ``""`` is the real clock; ``"latest-order"`` is the newest order in
the store plus one day (for historical data such as the bundled 2010-2011 sample, so that the
last day's buyers are "0 days ago"); anything else is an ISO date or date-time (``2011-12-10``,
``2011-12-10T09:00``, ``2011-12-10T09:00+01:00``). Always naive UTC, like the store.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from campaigns.errors import ConfigError

LATEST_ORDER = "latest-order"


def parse_as_of(value: str) -> datetime:
    """An ISO date/time -> naive UTC; raises ConfigError naming the setting."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(
            f"setting 'as_of' must be empty (the real clock), {LATEST_ORDER!r} or an ISO date/time "
            f"such as 2011-12-10 or 2011-12-10T09:00, got {value!r}"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def reference_now(settings: Any, store: Any) -> datetime:
    """The "now" to judge customers at (naive UTC); see the module docstring.

    With ``latest-order`` and no orders in the store, falls back to the real clock.
    """
    as_of = (settings.as_of or "").strip()
    if not as_of:
        return datetime.now(UTC).replace(tzinfo=None)
    if as_of == LATEST_ORDER:
        latest: datetime | None = store.catalog_counts().last_order_at
        if latest is None:
            return datetime.now(UTC).replace(tzinfo=None)
        return latest + timedelta(days=1)
    return parse_as_of(as_of)
