"""From campaign definitions to the jobs the scheduler should hold (pure: no scheduler, no I/O).

Each job is stored in APScheduler's job store by **textual reference** (``FUNC_RUN`` plus the
campaign name and zone), so the store survives restarts and code changes:

| schedule | jobs |
| --- | --- |
| ``cron`` + ``timezone: recipient`` | one per audience zone, id ``campaign:NAME@ZONE``, cron in ZONE |
| ``cron`` + an IANA zone | one, id ``campaign:NAME``, cron in that zone, everyone |
| ``interval`` | one, id ``campaign:NAME``, anchored at 2000-01-01 00:00 so restarts keep the rhythm |
| ``once`` | like cron, at ``ONCE_AT`` (09:00) local on that date |
| a due-based kind (post_purchase ...) without a schedule | one hourly tick, id ``campaign:NAME`` |

plus ``train``, the nightly retrain (``TRAIN_CRON`` in the shop's zone) whenever any campaign is
scheduled. A job's ``fingerprint`` (function, args, trigger) tells ``sync`` whether it changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from campaigns.definition import CampaignDefinition, ScheduleSpec

FUNC_RUN = "campaigns.scheduling.jobs:run_scheduled"
FUNC_TRAIN = "campaigns.scheduling.jobs:train_scheduled"
#: the nightly retrain, in the shop's zone: before the morning campaigns of the shop's own region
TRAIN_CRON = "0 3 * * *"
TRAIN_JOB_ID = "train"
#: the local time a ``once: DATE`` campaign is sent at
ONCE_AT = time(9, 0)
#: due-based kinds (post_purchase ...) without a schedule look for due recipients this often
DEFAULT_TICK = timedelta(hours=1)
INTERVAL_ANCHOR = datetime(2000, 1, 1)
#: job ids that ``sync`` owns (retry jobs are left to run out)
MANAGED_PREFIXES = ("campaign:", TRAIN_JOB_ID)


@dataclass(frozen=True)
class JobSpec:
    """One job as ``sync`` wants it in the job store."""

    id: str
    func: str
    args: tuple[Any, ...]
    trigger: BaseTrigger
    name: str
    campaign: str | None = None
    zone: str | None = None

    @property
    def fingerprint(self) -> str:
        return job_fingerprint(self.func, self.args, self.trigger)


def job_fingerprint(func: str, args: Sequence[Any], trigger: BaseTrigger) -> str:
    return f"{func}|{tuple(args)!r}|{trigger!r}"


def is_managed(job_id: str) -> bool:
    return job_id == TRAIN_JOB_ID or job_id.startswith("campaign:")


def build_trigger(spec: ScheduleSpec, zone: str) -> BaseTrigger:
    """The APScheduler trigger for ``spec`` evaluated in ``zone`` (an IANA name)."""
    tz = ZoneInfo(zone)
    if spec.cron and spec.send_time == "preferred":
        # every hour of the window on the cron's days: each fire sends to the recipients of that hour
        minute, _, *rest = spec.cron.lower().split()
        hours = f"{spec.send_window[0]}-{spec.send_window[1]}"
        return CronTrigger.from_crontab(" ".join([minute, hours, *rest]), timezone=tz)
    if spec.cron:
        return CronTrigger.from_crontab(spec.cron.lower(), timezone=tz)
    if spec.interval:
        return IntervalTrigger(
            seconds=int(spec.interval.total_seconds()),
            start_date=INTERVAL_ANCHOR.replace(tzinfo=tz),
            timezone=tz,
        )
    assert spec.once is not None
    return DateTrigger(datetime.combine(spec.once, ONCE_AT, tzinfo=tz), timezone=tz)


def run_key(fire_time: datetime, zone: str | None) -> str:
    """The run key of one fire: the same fire always resumes the same run.

    Recipient-local fires are named by their local wall time and zone (``sched:2024-03-11T09:00@Europe/Paris``),
    others by UTC (``sched:2024-03-11T08:00Z``).
    """
    if zone:
        return f"sched:{fire_time.astimezone(ZoneInfo(zone)):%Y-%m-%dT%H:%M}@{zone}"
    return f"sched:{fire_time.astimezone(ZoneInfo('UTC')):%Y-%m-%dT%H:%M}Z"


def campaign_jobs(definition: CampaignDefinition, zones: Iterable[str], shop_zone: str) -> list[JobSpec]:
    """The jobs of one campaign; ``zones`` are the audience's zones (used for ``timezone: recipient``)."""
    spec = definition.schedule
    name = definition.name
    if spec is None:
        if not definition.kind_plugin.ticks_without_schedule:
            return []
        spec = ScheduleSpec(interval=DEFAULT_TICK, timezone=shop_zone)
    if spec.timezone == "recipient" and not spec.interval:
        return [
            JobSpec(
                id=f"campaign:{name}@{zone}",
                func=FUNC_RUN,
                args=(name, zone),
                trigger=build_trigger(spec, zone),
                name=f"{name}: {spec.describe()} [{zone}]",
                campaign=name,
                zone=zone,
            )
            for zone in sorted(set(zones) | {shop_zone})
        ]
    zone = shop_zone if spec.timezone == "recipient" else spec.timezone
    return [
        JobSpec(
            id=f"campaign:{name}",
            func=FUNC_RUN,
            args=(name, None),
            trigger=build_trigger(spec, zone),
            name=f"{name}: {spec.describe()} [{zone}]",
            campaign=name,
        )
    ]


def train_job(shop_zone: str) -> JobSpec:
    return JobSpec(
        id=TRAIN_JOB_ID,
        func=FUNC_TRAIN,
        args=(),
        trigger=CronTrigger.from_crontab(TRAIN_CRON, timezone=ZoneInfo(shop_zone)),
        name=f"train: retrain the recommender, cron {TRAIN_CRON!r} [{shop_zone}]",
    )


def desired_jobs(
    definitions: Iterable[CampaignDefinition], zones: Iterable[str], shop_zone: str
) -> list[JobSpec]:
    """Every job the scheduler should hold for these campaigns, by id."""
    zones = list(zones)
    jobs: list[JobSpec] = []
    for d in definitions:
        jobs.extend(campaign_jobs(d, zones, shop_zone))
    if jobs:
        jobs.append(train_job(shop_zone))
    return sorted(jobs, key=lambda j: j.id)
