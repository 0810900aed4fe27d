"""``schedule: {cron: "0 9 * * MON", timezone: recipient, send_time: preferred}``: each recipient at their hour.

The scheduler fires such a campaign every hour of ``send_window`` on the cron's days, in each audience
zone (campaigns/scheduling/plan.py); each fire keeps only the recipients whose preferred hour (from
`retain predict`, their local time) is that hour. Preferred hours outside the window are moved to its
nearest edge; recipients without one (no prediction, or a shop whose orders carry no time of day) get
the cron's own hour. Quiet hours and every other eligibility rule still apply when the run sends.
A manual `retain send` (no scheduled hour) sends to everyone, as before.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from campaigns.definition import CampaignDefinition
from campaigns.kinds.base import Member


def recipient_hour(preferred: int | None, window: tuple[int, int], default: int) -> int:
    """The local hour a recipient is sent at: their preferred hour clamped to the window, else ``default``."""
    if preferred is None:
        return default
    return min(max(preferred, window[0]), window[1])


def preferred_hour_filter(
    store: Any, definition: CampaignDefinition, zone: str | None, scheduled_for: datetime | None
) -> Callable[[list[Member]], list[Member]] | None:
    """A batch filter keeping the recipients of this fire's local hour; None when the campaign is not
    ``send_time: preferred`` or the run is not a recipient-local scheduled fire."""
    spec = definition.schedule
    if (
        spec is None
        or spec.send_time != "preferred"
        or zone is None
        or scheduled_for is None
        or not spec.cron
    ):
        return None
    fire = scheduled_for if scheduled_for.tzinfo else scheduled_for.replace(tzinfo=UTC)
    hour = fire.astimezone(ZoneInfo(zone)).hour
    default = int(spec.cron.split()[1])
    window = spec.send_window

    def keep(batch: list[Member]) -> list[Member]:
        stored = store.predictions_for([m.customer.id for m in batch])
        return [
            m
            for m in batch
            if recipient_hour(getattr(stored.get(m.customer.id), "preferred_hour", None), window, default)
            == hour
        ]

    return keep


__all__ = ["preferred_hour_filter", "recipient_hour"]
