"""The missed-run policy: which of a job's due fire times to send, and which to record as skipped.

APScheduler hands a job every fire time that came due since it last ran (after a restart, a
daily campaign may bring a week of them). The policy, judged against an injected "now":

- a fire later than the campaign's ``max_lateness`` is **skipped** with the reason (no surprise
  blast of last week's newsletter);
- of the fires still within the lateness, only the **latest** is sent; earlier ones are recorded as
  skipped, coalesced into it (overlapping fires of one campaign never send twice).

    >>> d = decide_fires([t0, t1], now=t1 + timedelta(minutes=5), max_lateness=timedelta(hours=6))
    >>> d.run_at == t1
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta


@dataclass(frozen=True)
class FireDecision:
    """``run_at``: the fire to send now (None: nothing); ``skipped``: (fire time, reason) to record."""

    run_at: datetime | None
    skipped: list[tuple[datetime, str]] = field(default_factory=list)


def human_duration(delta: timedelta) -> str:
    """``timedelta(days=2, hours=3)`` -> ``"2d 3h"``; ``timedelta(minutes=45)`` -> ``"45m"``."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m")) if v]
    return " ".join(parts) or f"{seconds}s"


def decide_fires(fire_times: Sequence[datetime], now: datetime, max_lateness: timedelta) -> FireDecision:
    """Apply the policy to aware ``fire_times`` (any order) at aware ``now``; see the module docstring."""
    ordered = sorted(set(fire_times))
    skipped: list[tuple[datetime, str]] = []
    in_time: list[datetime] = []
    for t in ordered:
        late = now - t
        if late > max_lateness:
            skipped.append(
                (
                    t,
                    f"missed: due {t:%Y-%m-%d %H:%M %Z}, {human_duration(late)} late, beyond "
                    f"max_lateness {human_duration(max_lateness)} (the scheduler was not running)",
                )
            )
        else:
            in_time.append(t)
    if not in_time:
        return FireDecision(None, skipped)
    latest = in_time[-1]
    for t in in_time[:-1]:
        skipped.append((t, f"coalesced into the run due {latest:%Y-%m-%d %H:%M %Z}"))
    return FireDecision(latest, skipped)
