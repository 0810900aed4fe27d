"""Two real shops for the inbox-ready tests: Online Retail (the importer, UK gift shop, GBP) and Groceries
(a basket file: member + day baskets, no prices, no emails), each imported with `retain import`, trained
with `retain train`, and the starter campaigns' emails built for real customers through the factory.

Tool probes: a test that needs SpamAssassin, Chromium or the npm tools skips with the reason, or fails
under RETAIN_REQUIRE_SERVICES=1 (CI, which installs them: .ci/run).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from campaigns.checks import Toolbox
from campaigns.clock import reference_now
from campaigns.config import Settings, load_settings, require_services
from campaigns.definition import CampaignDefinition, campaign_paths, load_campaign
from campaigns.factory import BuildOptions, EmailFactory, Prepared, campaign_recommender
from campaigns.kinds import AudienceRequest, Member
from campaigns.segments import load_segments, resolve_segment, sample_segment

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
ONLINE_RETAIL = ROOT / "data" / "online_retail.csv.gz"
GROCERIES = ROOT.parent.parent / "shared" / "data" / "groceries" / "groceries.csv.gz"
if not GROCERIES.exists():  # a clone outside /work/clones: the shared copy by its absolute path
    GROCERIES = Path("/work/shared/data/groceries/groceries.csv.gz")
TEMPLATES = ROOT / "templates"
ARTIFACTS = ROOT / "test-artifacts"
#: the public address of `retain serve` as a real shop has it (https, not the loopback default)
PUBLIC_URL = "https://mail.shop.example.com/retain"

#: the starter campaigns of templates/emails
STARTERS = (
    "weekly-picks",
    "thank-you-follow-up",
    "vip-early-access",
    "we-miss-you",
    "first-purchase-upsell",
    "back-in-stock",
)
IMPORTS = {
    "online-retail": ["import", "online-retail", str(ONLINE_RETAIL)],
    "groceries": [
        "import", "orders", str(GROCERIES), "--format", "generic", "--no-header",
        "--map", "customer=1,date=2,product_name=3", "--date-format", "%d-%m-%Y",
        "--basket-by", "customer,date", "--aggregate-duplicates",
    ],
}  # fmt: skip


def need_tool(missing: str | None) -> None:
    """Skip (or fail under RETAIN_REQUIRE_SERVICES=1) when ``missing`` says a tool is absent."""
    if missing is None:
        return
    if require_services():
        pytest.fail(missing + " and RETAIN_REQUIRE_SERVICES=1 requires it (.ci/run installs it)")
    pytest.skip(missing + " (set RETAIN_REQUIRE_SERVICES=1 to make this a failure)")


def toolbox() -> Toolbox:
    return Toolbox.detect(Settings())


@dataclass
class Shop:
    name: str
    settings: Settings
    store: Any


def _retain(args: list[str], env: dict[str, str], cwd: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "from campaigns.cli import run; run()", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"retain {' '.join(args[:3])}: {done.stderr[-2000:]}"


def build_shop(name: str, root: Path) -> Iterator[Shop]:
    """Import ``name`` (a key of IMPORTS) into a fresh SQLite database under ``root`` and train on it."""
    source = Path(IMPORTS[name][2])
    if not source.exists():
        pytest.skip(f"{source} is not on this machine")
    root.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{root / 'retain.db'}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RETAIN_")},
        "OPENBLAS_NUM_THREADS": "1",
        "RETAIN_VAR_DIR": str(root / "var"),
        "RETAIN_AS_OF": "latest-order",
    }
    _retain(["--db", db, *IMPORTS[name]], env, root)
    # per-shop selection at a short budget: these shops test emails, not model quality
    _retain(["--db", db, "train", "--budget", "10"], env, root)
    settings = load_settings(
        env={},
        database_url=db,
        var_dir=str(root / "var"),
        templates_dir=str(TEMPLATES),
        segments_file=str(ROOT / "segments.yaml"),
        as_of="latest-order",
        shop_name="Paper & Pine" if name == "groceries" else "Retain Demo Gifts",
        shop_url="https://shop.example.com",
        from_address="Paper & Pine <hello@shop.example.com>",
        public_url=PUBLIC_URL,
        secret_key="inbox-test-secret",
        dkim_selector="sel",
        dkim_domain="shop.example.com",
        dkim_private_key_path=str(DATA / "dkim_test_key.pem"),
        soft_opt_in=True,
        quiet_hours="",
    )
    from campaigns.store import Store

    store = Store.open(db)
    try:
        yield Shop(name, settings, store)
    finally:
        store.close()


def starter_campaigns() -> list[CampaignDefinition]:
    return [load_campaign(p) for p in campaign_paths(TEMPLATES)]


def real_members(shop: Shop, definition: CampaignDefinition, limit: int) -> list[Member]:
    """The first ``limit`` recipients the campaign would have now (the kind's own audience, else its segment)."""
    now = reference_now(shop.settings, shop.store)
    segments_file = Path(shop.settings.segments_file)
    request = AudienceRequest(shop.store, shop.settings, definition, now, segments_file)
    own = definition.kind_plugin.preview_members(request, limit)
    if own is not None:
        return list(own)[:limit]
    segment = resolve_segment(definition.segment_rules or definition.segment, load_segments(segments_file))
    return [Member(m.customer) for m in sample_segment(shop.store, segment, now=now, limit=limit)]


def addressed(member: Member) -> Member:
    """Basket files have no addresses: the test gives such a customer one, to build the whole message."""
    if member.customer.email:
        return member
    return replace(
        member, customer=replace(member.customer, email=f"member-{member.customer.external_id}@example.com")
    )


def real_emails(shop: Shop, definition: CampaignDefinition, customers: int = 2) -> list[tuple[str, Prepared]]:
    """The campaign's emails as a send builds them, for the first real recipients and for the largest real
    context (campaigns/largest.py), labelled."""
    from campaigns.largest import largest_inputs

    recommender = campaign_recommender(definition, shop.settings, shop.store)
    factory = EmailFactory(
        shop.settings,
        definition,
        catalogue=shop.store,
        recommender=recommender,
        options=BuildOptions(run_key="inbox-test", refuse_oversized=False),
    )
    out: list[tuple[str, Prepared]] = []
    members = [addressed(m) for m in real_members(shop, definition, customers * 5)]
    for item in factory.prepare(members):
        if isinstance(item, Prepared) and len(out) < customers:
            out.append((f"customer {item.member.customer.external_id}", item))
    largest = largest_inputs(definition, shop.store)
    if largest is not None:
        member, inputs, _ = largest
        member = addressed(member)
        item = factory.prepare_inputs(member, replace(inputs, customer=member.customer))
        if isinstance(item, Prepared):
            out.append(("largest real context", item))
    return out
