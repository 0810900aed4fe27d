"""Best send hour: preferred hours shrunk toward the shop's, ``send_time: preferred`` in definitions, the
scheduler's hourly trigger, and each hourly fire keeping only its recipients (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from campaigns.definition import ScheduleSpec, load_campaign
from campaigns.errors import TemplateError
from campaigns.lifecycle.sendhour import fit_preferred_hours, local_hours, within
from campaigns.lifecycle.sendtime import recipient_hour
from campaigns.runner import RunRequest, iter_audience
from campaigns.scheduling.plan import build_trigger
from campaigns.store.predictions import OrderColumns, PredictionFitRecord, PredictionRecord
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn
from tests.test_definition import write

from .synthetic import shop_settings

NOW = datetime(2024, 3, 4, 6, 0)  # a Monday, 06:00 UTC


def test_preferred_hours_are_shrunk_toward_the_shop() -> None:
    # the shop buys at 14:00; customer 1 ordered once at 03:00, customer 2 ten times at 19:00
    cid = np.array([1] + [2] * 10 + [9] * 200)
    hour = np.array([3] + [19] * 10 + [14] * 200)
    weekday = np.array([0] + [4] * 10 + [2] * 200)
    fit = fit_preferred_hours(cid, hour, weekday)
    assert fit.by_customer[1] == (14, 2)  # one order says little: the shop's pattern
    assert fit.by_customer[2] == (19, 4)  # ten orders: their own
    assert fit.shop_hour == 14


def test_local_hours_use_each_customers_zone() -> None:
    at = np.array(
        ["2024-07-01T12:00:00", "2024-07-01T12:00:00", "2024-01-15T12:00:00"], dtype="datetime64[s]"
    )
    orders = OrderColumns(np.array([1, 2, 2]), at, np.array([1.0, 1.0, 1.0]))
    hour, weekday = local_hours(orders, {1: "America/New_York", 2: None}, "Europe/London")
    assert hour.tolist() == [8, 13, 12]  # New York summer (UTC-4); London summer (+1) and winter
    assert weekday.tolist() == [0, 0, 0]
    assert within(np.array([23, 1, 5]), np.array([1, 23, 1])).tolist() == [True, True, False]


def test_definition_accepts_preferred_and_refuses_what_cannot_work(tmp_path: Path) -> None:
    base = "name: c\nkind: winback\nsubject: Hi\nschedule: {cron: '0 9 * * MON', timezone: recipient, send_time: preferred%s}\n"
    d = load_campaign(write(tmp_path, base % ", send_window: [7, 21]"))
    assert (
        d.schedule is not None and d.schedule.send_time == "preferred" and d.schedule.send_window == (7, 21)
    )
    assert "preferred hour" in d.schedule.describe()
    for extra, needle in (
        (", send_window: [20, 8]", "send_window must be"),
        (", send_window: [10, 20]", "outside send_window"),
        (", timezone: Europe/Paris", "timezone: recipient"),
    ):
        text = base % extra
        if "Europe/Paris" in extra:
            text = text.replace("timezone: recipient, ", "")
        with pytest.raises(TemplateError, match=needle):
            load_campaign(write(tmp_path, text))
    with pytest.raises(TemplateError, match="'fixed' or 'preferred'"):
        load_campaign(
            write(
                tmp_path,
                "name: c\nkind: winback\nsubject: Hi\nschedule: {cron: '0 9 * * *', send_time: best}\n",
            )
        )


def test_preferred_trigger_fires_every_hour_of_the_window_on_the_crons_days() -> None:
    spec = ScheduleSpec(cron="0 9 * * MON", send_time="preferred", send_window=(8, 11))
    trigger = build_trigger(spec, "Europe/Paris")
    start = datetime(2024, 3, 1, tzinfo=UTC)  # a Friday
    fires, prev, now = [], None, start
    for _ in range(5):
        nxt = trigger.get_next_fire_time(prev, now)
        fires.append(nxt.astimezone(ZoneInfo("Europe/Paris")))
        prev, now = nxt, nxt + timedelta(seconds=1)
    assert [(f.day, f.hour) for f in fires] == [(4, 8), (4, 9), (4, 10), (4, 11), (11, 8)]


def test_recipient_hour_clamps_to_the_window() -> None:
    assert recipient_hour(None, (8, 20), 9) == 9
    assert recipient_hour(6, (8, 20), 9) == 8
    assert recipient_hour(22, (8, 20), 9) == 20
    assert recipient_hour(13, (8, 20), 9) == 13


#: customer -> preferred hour (None: a prediction without an hour; "none": no prediction row)
PREFERRED: dict[str, Any] = {"early": 6, "ten": 10, "late": 23, "unknown": None, "new": "none"}


@pytest.fixture
def shop(store: Any) -> Any:
    batch = ImportBatch(source="generic")
    batch.products["P"] = ProductIn("P", "Tea", 3.0, "GBP")
    for key in PREFERRED:
        batch.customers[key] = CustomerIn(
            key, email=f"{key}@shop.example.com", marketing_consent=True, timezone="Europe/Paris"
        )
        batch.orders[key] = OrderIn(key, key, NOW - timedelta(days=40), "GBP", [("P", 1, 3.0)])
    store.write_import(batch)
    ids = {c.external_id: c.id for b in store.iter_customers() for c in b}
    rows = [
        PredictionRecord(ids[k], NOW, 0.5, 0.1, 0.3, preferred_hour=h, preferred_weekday=0)
        for k, h in PREFERRED.items()
        if h != "none"
    ]
    store.replace_predictions(rows, PredictionFitRecord(NOW, NOW, len(rows), {}))
    return store


def test_each_hourly_fire_keeps_the_recipients_of_its_hour(shop: Any, tmp_path: Path) -> None:
    settings = shop_settings(tmp_path, as_of=NOW.isoformat())
    path = write(
        tmp_path,
        "name: c\nkind: winback\nsubject: Hi\n"
        "schedule: {cron: '0 9 * * MON', timezone: recipient, send_time: preferred, send_window: [8, 20]}\n",
    )
    d = load_campaign(path)
    paris = ZoneInfo("Europe/Paris")

    def at(local_hour: int) -> list[str]:
        fire = datetime(2024, 3, 4, local_hour, tzinfo=paris).astimezone(UTC).replace(tzinfo=None)
        request = RunRequest(d, scheduled_for=fire, zone="Europe/Paris")
        return sorted(
            m.customer.external_id for b in iter_audience(shop, settings, request, now=NOW) for m in b
        )

    assert at(8) == ["early"]  # 06:00 is before the window: its first hour
    assert at(9) == ["new", "unknown"]  # no preferred hour: the cron's
    assert at(10) == ["ten"]
    assert at(20) == ["late"]
    assert at(15) == []
    # a manual send (no scheduled hour) goes to everyone at once
    everyone = RunRequest(d)
    assert len([m for b in iter_audience(shop, settings, everyone, now=NOW) for m in b]) == 5
