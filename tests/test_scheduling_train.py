"""The scheduler retrains after each import (campaigns/scheduling/jobs.py: ``queue_train_if_stale`` at
start and every re-sync, ``train_after_import`` in the pool) besides its nightly ``train`` job."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from campaigns.scheduling import jobs
from campaigns.scheduling.jobs import (
    TRAIN_AFTER_IMPORT_JOB,
    SchedulerContext,
    queue_train_if_stale,
    train_after_import,
)
from campaigns.store import Store
from campaigns.training import model_is_stale, train_model
from recommender.storage import read_metadata
from tests.scheduling_fixtures import PEOPLE, write_people

from .synthetic import make_shop, shop_settings

NOW = datetime(2024, 6, 3, 10, 0, tzinfo=UTC)


class FakeScheduler:
    def __init__(self, *ids: str) -> None:
        self.jobs: dict[str, dict[str, Any]] = {i: {} for i in ids}

    def get_job(self, job_id: str) -> Any:
        return self.jobs.get(job_id)

    def add_job(self, func: str, trigger: Any, **kw: Any) -> None:
        self.jobs[kw["id"]] = {"func": func, "trigger": trigger, **kw}


@pytest.fixture
def ctx(tmp_path: Path, db_url: str) -> Iterator[SchedulerContext]:
    store = Store.open(db_url)
    make_shop(store, customers=40)
    settings = shop_settings(tmp_path, database_url=db_url)
    context = SchedulerContext(settings, store, clock=lambda: NOW, scheduler=FakeScheduler("train"))
    jobs.bind(context)
    try:
        yield context
    finally:
        jobs.bind(None)
        store.close()


def test_an_import_queues_one_retrain_and_the_retrain_catches_up(ctx: SchedulerContext) -> None:
    store: Any = ctx.store
    assert model_is_stale(store, ctx.settings) == "no model yet"
    train_model(store, ctx.settings, model="itemknn")
    assert model_is_stale(store, ctx.settings) is None
    assert not queue_train_if_stale(ctx)
    write_people(store)  # an import: new customers and orders
    assert "an import" in (model_is_stale(store, ctx.settings) or "")
    assert queue_train_if_stale(ctx)
    assert not queue_train_if_stale(ctx)  # once: the job is already waiting
    job = ctx.scheduler.jobs[TRAIN_AFTER_IMPORT_JOB]  # type: ignore[union-attr]
    assert job["func"] == "campaigns.scheduling.jobs:train_after_import" and job["trigger"].run_date == NOW
    before = read_metadata(ctx.settings.resolved_model_path())["customers"]
    out = train_after_import()
    assert out.status == "sent"
    assert read_metadata(ctx.settings.resolved_model_path())["customers"] == before + len(PEOPLE)
    assert model_is_stale(store, ctx.settings) is None
    write_people(store)  # re-importing the same rows changes nothing: no retrain
    assert model_is_stale(store, ctx.settings) is None
    assert train_after_import().status == "nothing"


def test_no_retrain_is_queued_without_scheduled_campaigns(ctx: SchedulerContext) -> None:
    ctx.scheduler = FakeScheduler()  # no nightly train job: nothing is scheduled
    assert not queue_train_if_stale(ctx)
