"""A small synthetic shop with known shape, for runner tests, fault trials and benchmarks.

Every customer has 2-4 orders within the 60 days before ``AS_OF`` (so all are "active-buyers"),
consent, a valid ``@example.com`` address and the London timezone; products come in 3 categories.
"""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from campaigns.config import Settings, settings_to_env
from campaigns.store.records import CustomerIn, ImportBatch, OrderIn, ProductIn

AS_OF = datetime(2024, 6, 3, 10, 0)
ROOT = Path(__file__).resolve().parent.parent
CATEGORIES = ("kitchen", "candles-lights", "home-decor")


def shop_settings(tmp: Path, **overrides: Any) -> Settings:
    """Settings for a throwaway shop under ``tmp`` (no quiet hours, no frequency cap, pinned clock)."""
    base: dict[str, Any] = dict(
        var_dir=str(tmp / "var"),
        templates_dir=str(ROOT / "templates"),
        model_path=str(tmp / "var" / "model" / "m"),
        as_of=AS_OF.isoformat(),
        quiet_hours="",
        frequency_cap=0,
        holdout_share=0.1,
        secret_key="test-secret-key-0123456789abcdef",
        batch_size=200,
    )
    base.update(overrides)
    return Settings(**base)


def cli_env(settings: Settings, tmp: Path, **extra: str) -> dict[str, str]:
    """Environment for a child ``retain`` process: these settings as RETAIN_*, an empty retain.toml."""
    config = tmp / "child-retain.toml"
    config.write_text("")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RETAIN_") or k == "RETAIN_REQUIRE_SERVICES"
    }
    env.update(
        settings_to_env(settings), RETAIN_CONFIG=str(config), OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(ROOT)
    )
    env.update(extra)
    return env


def make_shop(
    store: Any, customers: int = 60, products: int = 24, seed: int = 7, bounce_every: int = 0
) -> list[str]:
    """Write the shop; returns the customers' emails. ``bounce_every=k`` gives every k-th customer a
    ``bounce`` address (the SMTP sink rejects those with 550)."""
    rng = random.Random(seed)
    batch = ImportBatch(source="synthetic")
    for p in range(products):
        sku = f"SKU{p:04d}"
        batch.products[sku] = ProductIn(
            sku, f"Product {p}", round(2 + (p % 7) * 1.5, 2), "GBP", category=CATEGORIES[p % 3]
        )
    emails = []
    order_no = 0
    for c in range(customers):
        key = f"C{c:06d}"
        local = f"bounce{c}" if bounce_every and c % bounce_every == 0 else f"cust{c}"
        email = f"{local}@example.com"
        emails.append(email)
        batch.customers[key] = CustomerIn(
            key, email=email, first_name=f"Name{c}", country="United Kingdom", timezone="Europe/London",
            marketing_consent=True, consent_source="test",
        )  # fmt: skip
        favourite = rng.randrange(products)
        for _ in range(rng.randint(2, 4)):
            order_no += 1
            when = AS_OF - timedelta(days=rng.randint(1, 60), hours=rng.randint(0, 23))
            lines = [(f"SKU{favourite:04d}", 1, 5.0)]
            for _ in range(rng.randint(1, 3)):
                lines.append((f"SKU{rng.randrange(products):04d}", rng.randint(1, 3), 4.0))
            batch.orders[f"O{order_no:07d}"] = OrderIn(f"O{order_no:07d}", key, when, "GBP", lines)
    store.write_import(batch)
    return emails
