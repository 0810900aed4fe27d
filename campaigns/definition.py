"""A campaign is a template file: YAML front matter (what, to whom, when) + an MJML/Jinja body.

``templates/emails/<name>.mjml`` starts with a ``---`` block; this module parses and validates it and
is the single source of truth for what a campaign is. Every problem raises :class:`TemplateError`
naming ``file:line`` and what to do::

    ---
    name: weekly-picks
    kind: recommendation            # a kind from campaigns/kinds (retain campaigns --kinds), or a dotted path
    subject: "{{ customer.first_name }}, new picks for you"
    preheader: "Chosen from what you bought"
    from: "Shop <hello@shop.example>"   # exactly one address (also reply_to:)
    segment: active-buyers
    schedule: "0 9 * * MON"         # cron in the customer's local time, or a mapping (see ScheduleSpec)
    recommend: {blocks: [buy_again, discover], count: 4, exclude_categories: [gift-wrap]}
    ---
    <mjml> ... </mjml>

Beyond the common keys, each kind declares the keys it accepts (``promotion``, ``follow_up`` ...) and
parses them through :class:`FrontMatter`; the parsed values are in ``definition.options``.

``marketing`` defaults to True. A kind that declares itself ``transactional`` (post-purchase feedback
requests) lets a campaign say ``marketing: false``: it is then exempt from the frequency cap, but the
unsubscribe link and consent rules still apply (the runner decides; this module only records it).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from campaigns.coupons import CouponSpec, parse_coupons
from campaigns.errors import NotFoundError, TemplateError
from campaigns.variants import TestSpec, VariantSpec, parse_test, parse_variants

if TYPE_CHECKING:
    from campaigns.kinds.base import CampaignKind

BLOCK_NAMES = ("buy_again", "discover", "popular")
TEMPLATE_SUFFIX = ".mjml"
DEFAULT_MAX_LATENESS = timedelta(hours=6)
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_DURATION_RE = re.compile(r"^\s*(\d+)\s*(m|min|h|d|w)\s*$")
_DURATION_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class ScheduleSpec:
    """When a campaign runs: exactly one of ``cron`` (5 fields), ``interval`` or ``once``.

    ``timezone`` is ``"recipient"`` (the customer's own local time, falling back to the shop's) or an
    IANA name. Day-of-week must be written with names (MON..SUN, ranges like MON-FRI): numbers mean
    different days in cron (0 = Sunday) and APScheduler (0 = Monday), so they are refused.
    """

    cron: str | None = None
    interval: timedelta | None = None
    once: date | None = None
    timezone: str = "recipient"
    max_lateness: timedelta = DEFAULT_MAX_LATENESS
    #: "fixed": everyone at the cron's hour; "preferred": each recipient at their own predicted hour
    #: (docs/predictions.md), within ``send_window`` (local hours, inclusive), on the cron's days
    send_time: str = "fixed"
    send_window: tuple[int, int] = (8, 20)

    def describe(self) -> str:
        if self.cron:
            what = f"cron {self.cron!r}"
        elif self.interval:
            what = f"every {self.interval}"
        else:
            what = f"once on {self.once}"
        if self.send_time == "preferred":
            what += f", each at their preferred hour {self.send_window[0]:02d}-{self.send_window[1]:02d}h"
        return f"{what} ({self.timezone} time)"


@dataclass(frozen=True)
class RecommendSpec:
    """Which recommendation blocks an email shows and the business rules on them."""

    blocks: tuple[str, ...] = ("buy_again", "discover")
    count: int = 4
    exclude_categories: tuple[str, ...] = ()
    only_categories: tuple[str, ...] = ()
    max_per_category: int | None = None
    min_price: float | None = None
    max_price: float | None = None

    def rules(self) -> Any:
        """The recommender's ``Rules`` for these settings (recommender.rules, issue #3)."""
        from dataclasses import fields as dc_fields
        from dataclasses import is_dataclass

        from recommender import rules as rules_module  # type: ignore[attr-defined]

        wanted: dict[str, Any] = {
            "exclude_categories": frozenset(self.exclude_categories),
            "only_categories": frozenset(self.only_categories) or None,
            "max_per_category": self.max_per_category,
            "min_price": self.min_price,
            "max_price": self.max_price,
        }
        cls = rules_module.Rules
        if is_dataclass(cls):
            known = {f.name for f in dc_fields(cls)}
            wanted = {k: v for k, v in wanted.items() if k in known}
        return cls(**wanted)


@dataclass(frozen=True)
class PromotionSpec:
    code: str
    discount: str  # as shown: "20%", "£10"
    expires: date | None = None
    category: str | None = None


@dataclass(frozen=True)
class FollowUpSpec:
    """post_purchase: send ``days_after_order`` days after each order (within ``window_days``)."""

    days_after_order: int = 7
    window_days: int = 3
    similar_count: int = 3


@dataclass(frozen=True)
class CampaignDefinition:
    name: str
    kind: str
    path: Path
    subject: str
    preheader: str
    from_: str
    segment: str | None = None
    #: the campaign's Reply-To ("" = the ``reply_to`` setting, if any)
    reply_to: str = ""
    segment_rules: dict[str, Any] | None = None
    schedule: ScheduleSpec | None = None
    recommend: RecommendSpec = field(default_factory=RecommendSpec)
    #: the kind's own front-matter keys, parsed by the kind's OptionSpecs (absent optional keys are missing)
    options: Mapping[str, Any] = field(default_factory=dict)
    marketing: bool = True
    #: ``enabled: false``: `schedule sync` schedules nothing and `send` refuses (a dry run still works);
    #: `retain init` copies the starter campaigns this way
    enabled: bool = True
    holdout: float | None = None
    #: the language the template is written in (``locale:``, e.g. "de"); "" = the ``locale`` setting
    locale: str = ""
    #: rewrite the email's links to signed click-tracking redirects (``track_clicks: false`` opts out)
    track_clicks: bool = True
    #: A/B variants and the optional test-then-winner plan (campaigns/variants.py)
    variants: tuple[VariantSpec, ...] = ()
    ab_test: TestSpec | None = None
    #: unique per-recipient coupon codes (campaigns/coupons.py); None: the promotion's one code
    coupons: CouponSpec | None = None
    #: the MJML/Jinja body (everything after the front matter) and the file line it starts on
    body: str = ""
    body_line: int = 1
    #: front-matter line of each key, for messages that point at the definition
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def kind_plugin(self) -> CampaignKind:
        """The kind object (campaigns.kinds registry) this campaign's ``kind`` names."""
        from campaigns.kinds import resolve_kind

        return resolve_kind(self.kind)

    @property
    def promotion(self) -> PromotionSpec | None:
        value = self.options.get("promotion")
        return value if isinstance(value, PromotionSpec) else None

    @property
    def follow_up(self) -> FollowUpSpec | None:
        value = self.options.get("follow_up")
        return value if isinstance(value, FollowUpSpec) else None

    @property
    def text_path(self) -> Path:
        """The optional plain-text template beside the MJML file."""
        return self.path.with_suffix(".txt")

    @property
    def preview_path(self) -> Path:
        return self.path.with_suffix(".preview.json")


#: keys every campaign may have; a kind adds its own (``CampaignKind.options``)
COMMON_KEYS = frozenset(
    {
        "name",
        "kind",
        "subject",
        "preheader",
        "from",
        "reply_to",
        "segment",
        "schedule",
        "recommend",
        "marketing",
        "enabled",
        "holdout",
        "description",
        "locale",
        "track_clicks",
        "variants",
        "test",
        "coupons",
    }
)


class FrontMatter:
    """Values and file line numbers of one parsed front matter, with the validators kinds use.

    Every validator raises :class:`TemplateError` naming the file and the line of the key (or of the
    sub-key) through :meth:`fail`.
    """

    def __init__(self, path: Path, text: str, first_line: int) -> None:
        self.path = path
        self.first_line = first_line
        try:
            _refuse_aliases(path, text, first_line)
            node = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            last = first_line + max(text.count("\n") - 1, 0)  # errors at end of stream: the last line
            line = min(first_line + mark.line, last) if mark else first_line
            problem = getattr(exc, "problem", None) or str(exc)
            raise TemplateError(
                f"front matter is not valid YAML: {problem}", template=str(path), line=line
            ) from None
        if node is None or not isinstance(node, yaml.MappingNode):
            raise TemplateError("front matter must be a mapping of keys", template=str(path), line=first_line)
        self.data: dict[str, Any] = {}
        self.lines: dict[str, int] = {}
        self.sub_lines: dict[str, dict[str, int]] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            self.lines[key] = first_line + key_node.start_mark.line
            self.data[key] = yaml.SafeLoader(text).construct_object(value_node, deep=True)
            if isinstance(value_node, yaml.MappingNode):
                self.sub_lines[key] = {k.value: first_line + k.start_mark.line for k, _ in value_node.value}

    def fail(self, key: str, message: str, sub: str | None = None) -> TemplateError:
        """The error to raise for ``key`` (or ``key.sub``), pointing at its line."""
        line = self.sub_lines.get(key, {}).get(sub or "", 0) or self.lines.get(key, self.first_line)
        return TemplateError(message, template=str(self.path), line=line)

    def mapping(self, key: str, allowed: set[str]) -> dict[str, Any]:
        """``key``'s value as a mapping whose keys are all in ``allowed``."""
        return _mapping(self, key, allowed)

    def number(self, key: str, sub: str, value: Any, *, integer: bool = False, low: float = 0) -> Any:
        """``value`` (found at ``key.sub``) as a number (an int when ``integer``) of at least ``low``."""
        return _number(self, key, sub, value, integer=integer, low=low)

    def string_list(self, key: str, sub: str, value: Any) -> tuple[str, ...]:
        return _string_list(self, key, sub, value)

    def duration(self, key: str, sub: str, value: Any) -> timedelta:
        return _duration(self, key, sub, value)


def yaml_alias(text: str) -> tuple[int, str] | None:
    """``(0-based line, "anchor &x" / "alias *x")`` of the first YAML anchor or alias in ``text``, else
    None. Retain's YAML files never need them, and an alias "bomb" (a few lines expanding to billions
    of values) would stall every command that reads the file. Raises yaml.YAMLError for bad YAML."""
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        anchor = getattr(event, "anchor", None)
        if isinstance(event, yaml.AliasEvent) or anchor is not None:
            what = f"alias *{anchor}" if isinstance(event, yaml.AliasEvent) else f"anchor &{anchor}"
            return event.start_mark.line, what
    return None


def _refuse_aliases(path: Path, text: str, first_line: int) -> None:
    found = yaml_alias(text)
    if found is not None:
        raise TemplateError(
            f"front matter uses a YAML {found[1]}: anchors and aliases are not allowed here "
            "(write the value out in full)",
            template=str(path),
            line=first_line + found[0],
        )


def split_front_matter(path: Path, source: str) -> tuple[str, int, str, int]:
    """``(front matter text, its first line, body, body's first line)``; TemplateError if absent."""
    lines = source.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise TemplateError(
            "a campaign template must start with a '---' front-matter block", template=str(path), line=1
        )
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            return "".join(lines[1:i]), 2, "".join(lines[i + 1 :]), i + 2
    raise TemplateError("front matter is not closed with '---'", template=str(path), line=1)


def _str(fm: FrontMatter, key: str, *, required: bool = False, default: str | None = None) -> str | None:
    value = fm.data.get(key, default)
    if value is None:
        if required:
            raise TemplateError(f"missing required key {key!r}", template=str(fm.path), line=fm.first_line)
        return None
    if not isinstance(value, str) or not value.strip():
        raise fm.fail(key, f"{key!r} must be a non-empty string, got {value!r}")
    return value


_ADDRESS_RE = re.compile(r"^[^\s@<>()\[\],;:\\\"]+@[^\s@<>()\[\],;:\\\"]+\.[^\s@<>()\[\],;:\\\"]+$")
#: characters refused in From / Reply-To: controls, bidi overrides and isolates, zero-width characters
_INVISIBLE_RE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _address(fm: FrontMatter, key: str) -> str:
    """``key`` (from / reply_to) as exactly one address, ``Name <addr>`` or ``addr``; "" when absent.

    A second address (after a comma, or hidden in the display name), a missing or malformed address,
    and invisible or control characters are errors: the value becomes a header every recipient sees.
    """
    from email.utils import getaddresses

    value = _str(fm, key)
    if value is None:
        return ""
    if _INVISIBLE_RE.search(value):
        raise fm.fail(key, f"{key!r} contains control or invisible (bidi, zero-width) characters")
    pairs = getaddresses([value])
    if len(pairs) != 1 or value.count("@") != 1 or value.count("<") > 1 or value.count(">") > 1:
        raise fm.fail(
            key, f"{key!r} must be exactly one address, 'Name <addr@domain>' or 'addr@domain', got {value!r}"
        )
    name, addr = pairs[0]
    if not _ADDRESS_RE.match(addr) or (("<" in value) != (">" in value)):
        raise fm.fail(key, f"{key!r}: {addr or value!r} is not an email address like 'hello@shop.example'")
    return value.strip()


def _string_list(fm: FrontMatter, key: str, sub: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fm.fail(key, f"{key}.{sub} must be a list of strings, got {value!r}", sub)
    return tuple(value)


def _number(fm: FrontMatter, key: str, sub: str, value: Any, *, integer: bool = False, low: float = 0) -> Any:
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or value < low:
        kind = "an integer" if integer else "a number"
        raise fm.fail(key, f"{key}.{sub} must be {kind} >= {low}, got {value!r}", sub)
    return value


def _mapping(fm: FrontMatter, key: str, allowed: set[str]) -> dict[str, Any]:
    value = fm.data.get(key)
    if not isinstance(value, dict):
        raise fm.fail(key, f"{key!r} must be a mapping, got {value!r}")
    for sub in value:
        if sub not in allowed:
            raise fm.fail(key, f"unknown key {key}.{sub} (known: {', '.join(sorted(allowed))})", str(sub))
    return value


def _duration(fm: FrontMatter, key: str, sub: str, value: Any) -> timedelta:
    match = _DURATION_RE.match(str(value))
    if not match or int(match.group(1)) == 0:
        raise fm.fail(key, f"{key}.{sub} must be a duration like '30m', '6h', '1d', '2w', got {value!r}", sub)
    return timedelta(**{_DURATION_UNITS[match.group(2)]: int(match.group(1))})


def _schedule(fm: FrontMatter) -> ScheduleSpec | None:
    raw = fm.data.get("schedule")
    if raw is None:
        return None
    spec: dict[str, Any] = (
        {"cron": raw}
        if isinstance(raw, str)
        else _mapping(
            fm,
            "schedule",
            {"cron", "interval", "once", "timezone", "max_lateness", "send_time", "send_window"},
        )
    )
    chosen = [k for k in ("cron", "interval", "once") if spec.get(k) is not None]
    if len(chosen) != 1:
        raise fm.fail("schedule", "schedule needs exactly one of 'cron', 'interval' or 'once'")
    timezone = spec.get("timezone", "recipient")
    if not isinstance(timezone, str):
        raise fm.fail(
            "schedule", f"schedule.timezone must be 'recipient' or an IANA name, got {timezone!r}", "timezone"
        )
    if timezone != "recipient":
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise fm.fail(
                "schedule",
                f"unknown timezone {timezone!r} (use 'recipient' or e.g. 'Europe/London')",
                "timezone",
            ) from None
    lateness = (
        _duration(fm, "schedule", "max_lateness", spec["max_lateness"])
        if "max_lateness" in spec
        else DEFAULT_MAX_LATENESS
    )
    cron = interval = once = None
    if spec.get("cron") is not None:
        cron = _cron(fm, str(spec["cron"]))
    elif spec.get("interval") is not None:
        interval = _duration(fm, "schedule", "interval", spec["interval"])
    else:
        once = spec["once"]
        if isinstance(once, str):
            try:
                once = date.fromisoformat(once)
            except ValueError:
                once = None
        if not isinstance(once, date):
            raise fm.fail(
                "schedule", f"schedule.once must be a date (YYYY-MM-DD), got {spec['once']!r}", "once"
            )
    send_time, window = _send_time(fm, spec, cron, timezone)
    return ScheduleSpec(
        cron=cron,
        interval=interval,
        once=once,
        timezone=timezone,
        max_lateness=lateness,
        send_time=send_time,
        send_window=window,
    )


def _send_time(
    fm: FrontMatter, spec: dict[str, Any], cron: str | None, timezone: str
) -> tuple[str, tuple[int, int]]:
    """``send_time: fixed | preferred`` and ``send_window: [8, 20]`` (preferred needs a daily-hour cron
    in recipient time: the cron's hour is the hour of recipients without a predicted one)."""
    send_time = spec.get("send_time", "fixed")
    if send_time not in ("fixed", "preferred"):
        raise fm.fail(
            "schedule", f"schedule.send_time must be 'fixed' or 'preferred', got {send_time!r}", "send_time"
        )
    window = (8, 20)
    if "send_window" in spec:
        raw = spec["send_window"]
        if (
            not isinstance(raw, list)
            or len(raw) != 2
            or not all(isinstance(h, int) and not isinstance(h, bool) and 0 <= h <= 23 for h in raw)
            or raw[0] > raw[1]
        ):
            raise fm.fail(
                "schedule",
                f"schedule.send_window must be [first hour, last hour] (0-23, local), e.g. [8, 20], got {raw!r}",
                "send_window",
            )
        window = (raw[0], raw[1])
    if send_time == "preferred":
        fields = (cron or "").split()
        if not fields or not fields[1].isdigit() or timezone != "recipient":
            raise fm.fail(
                "schedule",
                "schedule.send_time: preferred needs a cron with one hour (e.g. '0 9 * * MON') and "
                "timezone: recipient; the cron's hour is used for recipients without a preferred hour",
                "send_time",
            )
        if not window[0] <= int(fields[1]) <= window[1]:
            raise fm.fail(
                "schedule",
                f"the cron's hour {fields[1]} is outside send_window {list(window)}",
                "send_window",
            )
    return send_time, window


def _cron(fm: FrontMatter, expr: str) -> str:
    from apscheduler.triggers.cron import CronTrigger

    parts = expr.split()
    if len(parts) != 5:
        raise fm.fail(
            "schedule", f"cron {expr!r} must have 5 fields (minute hour day month day-of-week)", "cron"
        )
    if any(ch.isdigit() for ch in parts[4]):
        raise fm.fail(
            "schedule",
            f"cron {expr!r}: write day-of-week with names (MON..SUN, MON-FRI), not numbers",
            "cron",
        )
    try:
        CronTrigger.from_crontab(expr.lower(), timezone="UTC")
    except ValueError as exc:
        raise fm.fail("schedule", f"bad cron {expr!r}: {exc}", "cron") from None
    return expr


_RECOMMEND_KEYS = {
    "blocks",
    "count",
    "exclude_categories",
    "only_categories",
    "max_per_category",
    "min_price",
    "max_price",
}


def _recommend(fm: FrontMatter) -> RecommendSpec:
    if "recommend" not in fm.data:
        return RecommendSpec()
    return _recommend_mapping(fm, "recommend", _mapping(fm, "recommend", _RECOMMEND_KEYS), label="recommend")


def _recommend_mapping(fm: FrontMatter, key: str, raw: Any, *, label: str) -> RecommendSpec:
    """A ``recommend:`` mapping found at ``key`` (the campaign's own, or a variant's), named ``label``."""
    if not isinstance(raw, dict) or set(raw) - _RECOMMEND_KEYS:
        raise fm.fail(key, f"{label} must be a mapping of {', '.join(sorted(_RECOMMEND_KEYS))}")
    out: dict[str, Any] = {}
    if "blocks" in raw:
        blocks = _string_list(fm, key, "blocks", raw["blocks"])
        bad = [b for b in blocks if b not in BLOCK_NAMES]
        if bad or not blocks:
            raise fm.fail(
                key,
                f"{label}.blocks: unknown block {bad} (known: {', '.join(BLOCK_NAMES)})",
                "blocks",
            )
        out["blocks"] = blocks
    if "count" in raw:
        out["count"] = _number(fm, key, "count", raw["count"], integer=True, low=1)
        if out["count"] > 12:
            raise fm.fail(key, f"{label}.count must be at most 12 (an email, not a catalogue)", "count")
    for sub in ("exclude_categories", "only_categories"):
        if sub in raw:
            out[sub] = _string_list(fm, key, sub, raw[sub])
    if raw.get("max_per_category") is not None:
        out["max_per_category"] = _number(
            fm, key, "max_per_category", raw["max_per_category"], integer=True, low=1
        )
    for sub in ("min_price", "max_price"):
        if raw.get(sub) is not None:
            out[sub] = float(_number(fm, key, sub, raw[sub]))
    if (
        out.get("min_price") is not None
        and out.get("max_price") is not None
        and out["min_price"] > out["max_price"]
    ):
        raise fm.fail(key, f"{label}.min_price is above max_price", "min_price")
    return RecommendSpec(**out)


def parse_promotion(fm: FrontMatter, key: str = "promotion") -> PromotionSpec:
    """A ``promotion:`` mapping (code, discount, optional expires and category): the offer kinds share."""
    raw = _mapping(fm, key, {"code", "discount", "expires", "category"})
    return parse_promotion_mapping(fm, key, raw, label=key)


def parse_promotion_mapping(fm: FrontMatter, key: str, raw: Any, *, label: str) -> PromotionSpec:
    """A promotion mapping found at ``key`` (the campaign's, or a variant's ``offer``), named ``label``."""
    if not isinstance(raw, dict) or set(raw) - {"code", "discount", "expires", "category"}:
        raise fm.fail(key, f"{label} must be a mapping of code, discount, expires, category")
    for sub in ("code", "discount"):
        if (
            not isinstance(raw.get(sub), str | int)
            or isinstance(raw.get(sub), bool)
            or not str(raw.get(sub)).strip()
        ):
            raise fm.fail(key, f"{label}.{sub} is required (a string)", sub)
    expires = raw.get("expires")
    if isinstance(expires, str):
        try:
            expires = date.fromisoformat(expires)
        except ValueError:
            expires = False
    if expires is not None and not isinstance(expires, date):
        raise fm.fail(
            key, f"{label}.expires must be a date (YYYY-MM-DD), got {raw.get('expires')!r}", "expires"
        )
    category = raw.get("category")
    if category is not None and not isinstance(category, str):
        raise fm.fail(key, f"{label}.category must be a string", "category")
    return PromotionSpec(
        code=str(raw["code"]), discount=str(raw["discount"]), expires=expires, category=category
    )


def parse_follow_up(fm: FrontMatter, key: str = "follow_up") -> FollowUpSpec:
    """A ``follow_up:`` mapping: days_after_order (>= 0), window_days and similar_count (>= 1)."""
    raw = _mapping(fm, key, {"days_after_order", "window_days", "similar_count"})
    out = {
        k: _number(fm, key, k, v, integer=True, low=0 if k == "days_after_order" else 1)
        for k, v in raw.items()
    }
    return FollowUpSpec(**out)


def _kind(fm: FrontMatter) -> CampaignKind:
    from campaigns.kinds import kind_names, resolve_kind

    spec = _str(fm, "kind", required=True)
    assert spec is not None
    try:
        return resolve_kind(spec)
    except NotFoundError as exc:
        if "." in spec or ":" in spec:
            raise fm.fail("kind", str(exc)) from None
        raise fm.fail(
            "kind", f"unknown kind {spec!r} (known: {', '.join(kind_names())}, or a dotted path)"
        ) from None


def _kind_options(fm: FrontMatter, kind: CampaignKind, kind_spec: str) -> dict[str, Any]:
    """Check every key is common or the kind's own; parse the kind's options (defaults for absent ones)."""
    for key in fm.data:
        if key in COMMON_KEYS or key in kind.options:
            continue
        from campaigns.kinds import builtin_kinds

        owners = sorted(k.name for k in builtin_kinds().values() if key in k.options)
        if owners:
            raise fm.fail(key, f"{key!r} only applies to kind: {' or '.join(owners)}")
        known = sorted(COMMON_KEYS | set(kind.options))
        raise fm.fail(key, f"unknown key {key!r} (known: {', '.join(known)})")
    options: dict[str, Any] = {}
    for key, spec in kind.options.items():
        if key in fm.data:
            options[key] = spec.parse(fm, key)
        elif spec.required:
            what = f" {spec.hint}" if spec.hint else ""
            raise fm.fail("kind", f"a {kind_spec} campaign needs a '{key}:' mapping{what}")
        elif spec.default is not None:
            options[key] = spec.default()
    return options


def parse_campaign(path: Path, source: str) -> CampaignDefinition:
    """Parse a campaign from its source text (see :func:`load_campaign`)."""
    fm_text, fm_line, body, body_line = split_front_matter(path, source)
    fm = FrontMatter(path, fm_text, fm_line)
    name = _str(fm, "name", default=path.name.removesuffix(TEMPLATE_SUFFIX))
    assert name is not None
    if not _NAME_RE.match(name):
        raise fm.fail("name", f"name {name!r} must be lower-case letters, digits and '-'")
    kind_spec = str(fm.data.get("kind") or "")
    kind = _kind(fm)
    options = _kind_options(fm, kind, kind_spec)
    segment = fm.data.get("segment")
    segment_name, segment_rules = None, None
    if isinstance(segment, dict):
        segment_rules = segment
    elif segment is not None:
        segment_name = _str(fm, "segment")
    marketing = fm.data.get("marketing", True)
    if not isinstance(marketing, bool):
        raise fm.fail("marketing", f"'marketing' must be true or false, got {marketing!r}")
    if not marketing and not kind.transactional:
        from campaigns.kinds import builtin_kinds

        allowed = sorted(k.name for k in builtin_kinds().values() if k.transactional)
        raise fm.fail(
            "marketing",
            f"only transactional kinds ({', '.join(allowed)}) may be marked 'marketing: false'",
        )
    enabled = fm.data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise fm.fail("enabled", f"'enabled' must be true or false, got {enabled!r}")
    holdout = fm.data.get("holdout")
    if holdout is not None and (
        isinstance(holdout, bool) or not isinstance(holdout, int | float) or not 0 <= holdout < 1
    ):
        raise fm.fail("holdout", f"'holdout' must be a share in [0, 1), got {holdout!r}")
    track_clicks = fm.data.get("track_clicks", True)
    if not isinstance(track_clicks, bool):
        raise fm.fail("track_clicks", f"'track_clicks' must be true or false, got {track_clicks!r}")
    locale = _str(fm, "locale") or ""
    if locale:
        from campaigns.config import LOCALE_RE

        if not LOCALE_RE.match(locale):
            raise fm.fail(
                "locale", f"'locale' must be a language tag such as 'en', 'de-AT' or 'ar', got {locale!r}"
            )
    recommend = _recommend(fm)
    promotion = options.get("promotion")
    if isinstance(promotion, PromotionSpec) and promotion.category and not recommend.only_categories:
        # products personalised within the promoted category
        recommend = replace(recommend, only_categories=(promotion.category,))
    if not body.strip():
        raise TemplateError(
            "the template body after the front matter is empty", template=str(path), line=body_line
        )
    variants = parse_variants(fm, options)
    ab_test = parse_test(fm, variants)
    coupons = parse_coupons(fm, options)
    return CampaignDefinition(
        name=name,
        kind=kind_spec,
        path=path,
        subject=_str(fm, "subject", required=True) or "",
        preheader=(_str(fm, "preheader", default="") or "") if fm.data.get("preheader") else "",
        from_=_address(fm, "from"),
        reply_to=_address(fm, "reply_to"),
        segment=segment_name,
        segment_rules=segment_rules,
        schedule=_schedule(fm),
        recommend=recommend,
        options=options,
        marketing=marketing,
        enabled=enabled,
        holdout=float(holdout) if holdout is not None else None,
        locale=locale,
        track_clicks=track_clicks,
        variants=variants,
        ab_test=ab_test,
        coupons=coupons,
        body=body,
        body_line=body_line,
        lines=dict(fm.lines),
    )


def load_campaign(path: Path) -> CampaignDefinition:
    """Read and validate one campaign file. Raises TemplateError (with file:line) or NotFoundError."""
    path = Path(path)
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotFoundError(f"campaign template {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise TemplateError(f"not UTF-8 text ({exc.reason})", template=str(path)) from None
    return parse_campaign(path, source)


def campaign_paths(templates_dir: Path) -> list[Path]:
    emails = Path(templates_dir) / "emails"
    if not emails.is_dir():
        raise NotFoundError(f"templates directory {emails} does not exist (setting 'templates_dir')")
    return sorted(emails.glob(f"*{TEMPLATE_SUFFIX}"))


def load_campaigns(templates_dir: Path) -> list[CampaignDefinition]:
    """Every campaign under ``<templates_dir>/emails``, by name; the first invalid one raises."""
    found = [load_campaign(p) for p in campaign_paths(templates_dir)]
    seen: dict[str, Path] = {}
    for d in found:
        if d.name in seen:
            raise TemplateError(
                f"campaign name {d.name!r} is also used by {seen[d.name]}", template=str(d.path)
            )
        seen[d.name] = d.path
    return sorted(found, key=lambda d: d.name)


def find_campaign(templates_dir: Path, name: str) -> CampaignDefinition:
    """The campaign called ``name`` (its front-matter name or its file stem); NotFoundError lists the known ones."""
    paths = campaign_paths(templates_dir)
    direct = Path(templates_dir) / "emails" / f"{name}{TEMPLATE_SUFFIX}"
    if direct in paths:
        d = load_campaign(direct)
        if d.name == name:
            return d
    known: list[str] = []
    for p in paths:
        try:
            d = load_campaign(p)
        except TemplateError:
            known.append(p.name.removesuffix(TEMPLATE_SUFFIX) + " (invalid)")
            continue
        if d.name == name:
            return d
        known.append(d.name)
    raise NotFoundError(
        f"no campaign named {name!r} in {Path(templates_dir) / 'emails'} (known: {', '.join(known) or 'none'})"
    )
