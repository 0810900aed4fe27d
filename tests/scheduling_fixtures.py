"""Small data and campaign files for the scheduling tests (tests/test_scheduling*.py)."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta
from pathlib import Path

from campaigns.config import Settings
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn

ROOT = Path(__file__).resolve().parent.parent
#: the reference clock of every runner-dependent test (settings.as_of)
AS_OF = datetime(2024, 3, 20, 10, 0)

FOLLOW_UP = """---
name: {name}
kind: post_purchase
subject: "Thank you, {{{{ customer.greeting }}}}"
schedule: {schedule}
follow_up: {{days_after_order: 7, window_days: 3, similar_count: 2}}
marketing: false
---
{{% extends "layouts/base.mjml" %}}
{{% block content %}}
<mj-section><mj-column><mj-text>Thanks for order {{{{ order.number }}}}</mj-text></mj-column></mj-section>
{{% endblock %}}
"""


def make_templates(tmp: Path, campaigns: dict[str, str]) -> Path:
    """A templates dir with the repo's layouts/partials and ``campaigns`` (file stem -> source)."""
    root = tmp / "templates"
    for part in ("layouts", "partials"):
        shutil.copytree(ROOT / "templates" / part, root / part, dirs_exist_ok=True)
    (root / "emails").mkdir(parents=True, exist_ok=True)
    for stem, source in campaigns.items():
        (root / "emails" / f"{stem}.mjml").write_text(source, encoding="utf-8")
    return root


def follow_up(name: str, schedule: str = '{cron: "0 10 * * *", timezone: recipient}') -> str:
    return FOLLOW_UP.format(name=name, schedule=schedule)


def settings_for(tmp: Path, db_url: str, templates: Path, **extra: object) -> Settings:
    values: dict[str, object] = dict(
        database_url=db_url,
        var_dir=str(tmp / "var"),
        templates_dir=str(templates),
        sender="memory://",
        as_of=AS_OF.isoformat(),
        holdout_share=0.0,
        quiet_hours="",
        shop_timezone="Europe/London",
        secret_key="test-secret",
        model_path=str(tmp / "model" / "none"),
    )
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


#: customer key -> timezone (None: the shop's); each has one order due for a 7-day follow-up
PEOPLE = {"paris": "Europe/Paris", "ny": "America/New_York", "nozone": None, "bad": "Mars/Olympus"}


def write_people(store: object, people: dict[str, str | None] = PEOPLE, days_ago: int = 8) -> None:
    batch = ImportBatch(source="test")
    batch.products["S1"] = ProductIn("S1", "Soap", 5.0, "GBP")
    for key, zone in people.items():
        batch.customers[key] = CustomerIn(
            key, email=f"{key}@example.test", first_name=key.title(), timezone=zone, marketing_consent=True
        )
        batch.orders[f"o-{key}"] = OrderIn(
            f"o-{key}", key, AS_OF - timedelta(days=days_ago), "GBP", [("S1", 1, 5.0)]
        )
    store.write_import(batch)  # type: ignore[attr-defined]
