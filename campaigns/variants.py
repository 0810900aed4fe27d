"""A/B variants of a campaign (front matter ``variants:`` and ``test:``), and who gets which.

::

    variants:
      - name: a                      # the first variant is the default unless test.default says otherwise
        weight: 1
      - name: b
        weight: 1
        subject: "{{ customer.greeting }}, 15% off your favourites"
        preheader: "This week only"
        content: {intro: "Picked for you, with 15% off"}   # the template prints {{ variant.content.intro }}
        offer: {code: SPRING15, discount: "15%"}           # replaces the campaign's promotion (offer kinds)
        recommend: {blocks: [discover, buy_again]}         # the recommendation strategy: discover first
    test:                            # optional: test first, then send the winner to the rest
      share: 0.2                     # of the eligible audience, split between the variants by weight
      wait: 4h                       # between the end of the test send and the decision
      metric: click_rate             # click_rate | conversion | revenue_per_recipient | uplift
      confidence: 0.97               # see campaigns/winner.py for the rule

Assignment is deterministic per (campaign, customer): a SHA-256 bucket in [0, 1) picks the variant by weight,
so a resumed or re-run send gives everyone the same variant. The holdout is decided first
(campaigns/eligibility.py) and never gets a variant. The test share uses a second, independent bucket.

Every variant's template uses the same ``variant`` context: ``{"name": ..., "content": {...}}`` (a campaign
without variants renders with ``{"name": "default", "content": {}}``), so ``retain lint`` renders each
variant and fails the one whose content, subject or preheader uses something undefined.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from campaigns.definition import CampaignDefinition, FrontMatter
    from campaigns.kinds.base import Member

METRICS = ("click_rate", "conversion", "revenue_per_recipient", "uplift")
MAX_VARIANTS = 8
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_VARIANT_KEYS = {"name", "weight", "subject", "preheader", "content", "offer", "recommend"}
_TEST_KEYS = {"share", "wait", "metric", "confidence", "default"}


@dataclass(frozen=True)
class VariantSpec:
    name: str
    weight: float = 1.0
    subject: str | None = None
    preheader: str | None = None
    content: Mapping[str, str] = field(default_factory=dict)
    offer: Any = None  # a campaigns.definition.PromotionSpec
    recommend: Any = None  # a campaigns.definition.RecommendSpec


@dataclass(frozen=True)
class TestSpec:
    """Test then winner: ``share`` of the audience first, the winner to the rest after ``wait``."""

    share: float
    wait: timedelta
    metric: str = "click_rate"
    confidence: float = 0.97
    default: str = ""  # "" = the first variant


def bucket(*parts: object) -> float:
    """A stable number in [0, 1) for ``parts`` (the same on every machine and Python version)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_variant(campaign: str, customer_id: int, variants: Sequence[VariantSpec]) -> str | None:
    """The variant ``customer_id`` gets in ``campaign`` (by weight; None when there are no variants)."""
    if not variants:
        return None
    total = sum(v.weight for v in variants)
    point = bucket("variant", campaign, customer_id) * total
    for v in variants:
        point -= v.weight
        if point < 0:
            return v.name
    return variants[-1].name


def in_test_share(campaign: str, customer_id: int, share: float) -> bool:
    """True for the customers of the test phase (an independent bucket from the variant's)."""
    return bucket("test", campaign, customer_id) < share


def default_variant(definition: CampaignDefinition) -> str | None:
    variants = definition.variants
    if not variants:
        return None
    test = definition.ab_test
    return (test.default if test and test.default else "") or variants[0].name


def variant_context(definition: CampaignDefinition, name: str | None) -> dict[str, Any]:
    """The ``variant`` value the template sees."""
    for v in definition.variants:
        if v.name == name:
            return {"name": v.name, "content": dict(v.content)}
    return {"name": name or "default", "content": {}}


def variant_definition(definition: CampaignDefinition, name: str) -> CampaignDefinition:
    """The campaign as variant ``name`` sends it (subject, preheader, offer, recommendation strategy)."""
    spec = next((v for v in definition.variants if v.name == name), None)
    if spec is None:
        raise LookupError(f"campaign {definition.name} has no variant {name!r}")
    changes: dict[str, Any] = {}
    if spec.subject is not None:
        changes["subject"] = spec.subject
    if spec.preheader is not None:
        changes["preheader"] = spec.preheader
    if spec.recommend is not None:
        changes["recommend"] = spec.recommend
    if spec.offer is not None:
        changes["options"] = {**definition.options, "promotion": spec.offer}
    return replace(definition, **changes) if changes else definition


TEST, WAITING, WINNER = "test", "waiting", "winner"


def with_variants(
    definition: CampaignDefinition, members: Sequence[Member], phase: str | None, winner: str | None
) -> list[Member]:
    """``members`` with their variant for this phase of the run (see campaigns/abtest.py).

    Phase "test" keeps only the test share (the others wait for the winner); phase "winner" gives the
    winner to everyone outside the test share (a test-share customer still pending keeps their variant).
    """
    test = definition.ab_test
    out = []
    for m in members:
        cid = m.customer.id
        tested = test is not None and in_test_share(definition.name, cid, test.share)
        if phase == TEST and not tested:
            continue
        name: str | None = winner
        if not (phase == WINNER and winner and not tested):
            name = assign_variant(definition.name, cid, definition.variants)
        out.append(replace(m, variant=name))
    return out


# ---------------------------------------------------------------------------- parsing (definition.py calls)


def parse_variants(fm: FrontMatter, options: Mapping[str, Any]) -> tuple[VariantSpec, ...]:
    """The ``variants:`` list; TemplateError naming the line and the variant for anything wrong."""
    from campaigns.definition import _recommend_mapping, parse_promotion_mapping

    raw = fm.data.get("variants")
    if raw is None:
        return ()
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_VARIANTS:
        raise fm.fail("variants", f"'variants' must be a list of 2 to {MAX_VARIANTS} variants")
    out: list[VariantSpec] = []
    for i, item in enumerate(raw):
        where = f"variants[{i}]"
        if not isinstance(item, dict):
            raise fm.fail("variants", f"{where} must be a mapping with at least 'name'")
        unknown = sorted(set(item) - _VARIANT_KEYS)
        if unknown:
            raise fm.fail(
                "variants", f"{where}: unknown key(s) {unknown} (known: {', '.join(sorted(_VARIANT_KEYS))})"
            )
        name = item.get("name")
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise fm.fail("variants", f"{where}: 'name' must be lower-case letters, digits, '-' or '_'")
        where = f"variant {name!r}"
        if name in {v.name for v in out}:
            raise fm.fail("variants", f"{where} is defined twice")
        weight = item.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            raise fm.fail("variants", f"{where}: 'weight' must be a positive number, got {weight!r}")
        for key in ("subject", "preheader"):
            if key in item and not isinstance(item[key], str):
                raise fm.fail("variants", f"{where}: '{key}' must be a string")
        content = item.get("content") or {}
        if not isinstance(content, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in content.items()
        ):
            raise fm.fail("variants", f"{where}: 'content' must map names to text")
        offer = None
        if "offer" in item:
            if "promotion" not in options and not _accepts_promotion(options):
                raise fm.fail(
                    "variants", f"{where}: 'offer' needs a kind with a promotion (e.g. kind: promotion)"
                )
            offer = parse_promotion_mapping(fm, "variants", item["offer"], label=f"{where} offer")
        recommend = None
        if "recommend" in item:
            recommend = _recommend_mapping(fm, "variants", item["recommend"], label=f"{where} recommend")
        out.append(
            VariantSpec(
                name=name,
                weight=float(weight),
                subject=item.get("subject"),
                preheader=item.get("preheader"),
                content=dict(content),
                offer=offer,
                recommend=recommend,
            )
        )
    names = [v.name for v in out]
    first_keys = set(out[0].content)
    for v in out[1:]:
        if set(v.content) != first_keys:
            raise fm.fail(
                "variants",
                f"variant {v.name!r} has content {sorted(v.content)} but variant {names[0]!r} has "
                f"{sorted(first_keys)}: every variant must define the same content names",
            )
    return tuple(out)


def _accepts_promotion(options: Mapping[str, Any]) -> bool:
    return "promotion" in options


def parse_test(fm: FrontMatter, variants: Sequence[VariantSpec]) -> TestSpec | None:
    """The ``test:`` mapping (needs ``variants``)."""
    if "test" not in fm.data:
        return None
    if not variants:
        raise fm.fail("test", "'test' needs 'variants:' (two or more) to test")
    raw = fm.mapping("test", _TEST_KEYS)
    share = raw.get("share")
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share < 1:
        raise fm.fail("test", f"test.share must be a share in (0, 1), got {share!r}", "share")
    if "wait" not in raw:
        raise fm.fail("test", "test.wait is required (e.g. 4h, 1d)", "wait")
    wait = fm.duration("test", "wait", raw["wait"])
    metric = raw.get("metric", "click_rate")
    if metric not in METRICS:
        raise fm.fail("test", f"test.metric must be one of {', '.join(METRICS)}, got {metric!r}", "metric")
    confidence = raw.get("confidence", 0.97)
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0.5 <= confidence < 1:
        raise fm.fail("test", f"test.confidence must be in [0.5, 1), got {confidence!r}", "confidence")
    default = raw.get("default", "")
    if default and default not in {v.name for v in variants}:
        raise fm.fail("test", f"test.default {default!r} is not one of the variants", "default")
    return TestSpec(float(share), wait, str(metric), float(confidence), str(default or ""))


__all__ = [
    "METRICS",
    "TEST",
    "WAITING",
    "WINNER",
    "TestSpec",
    "VariantSpec",
    "assign_variant",
    "bucket",
    "default_variant",
    "in_test_share",
    "parse_test",
    "parse_variants",
    "variant_context",
    "variant_definition",
    "with_variants",
]
