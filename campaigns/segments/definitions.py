"""Segment definitions: the rule vocabulary, ``segments.yaml`` loading and validation.

A segment is a name, a description and a mapping of rules. Every rule narrows the audience and
all rules are combined with AND (there is no OR: write two segments instead). Only customers
with at least one order before "now" can be in a segment.

Rule keys (see docs/segments.md for the exact definitions)::

    days_since_last_order: {min: 30, max: 180}   # days between the newest order and now
    days_since_first_order: {min: 0, max: 30}
    orders: {min: 2, max: 10}                    # number of orders
    spend: {min: 100.0, max: 5000}               # total spend (sum of order totals)
    rfm: {r: ">=4", f: ">=3", m: "1-2"}          # quintile scores 1..5 (5 = best)
    bought: {sku: ["85123A"], category: ["candles"], within_days: 90}
    country: ["United Kingdom", "France"]        # or {in: [...], not_in: [...]}
    tags: [vip]                                  # the shop's customer tags; or {any: [...], none: [...]}
    first_time_buyers: true                      # exactly one order
    top_spenders_pct: 10                         # the top 10% of customers by spend
    drifting: {factor: 1.5, gap: median}         # overdue against their own rhythm
    p_alive: {min: 0.2, max: 0.6}                # predicted chance still active (retain predict)
    expected_orders_90d: {min: 1}                # predicted orders in the next 90 days
    clv_top_pct: 10                              # the top 10% by predicted 12-month value
    next_order_within_days: 14                   # expected next order at most 14 days from now

Errors: a bad ``segments.yaml`` raises ConfigError naming ``file:line``; bad inline rules (from a
campaign's front matter) raise TemplateError naming the source; an unknown segment name raises
NotFoundError listing the known ones.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from campaigns.errors import ConfigError, NotFoundError, TemplateError

DEFAULT_SEGMENTS_FILE = Path("segments.yaml")
#: the segment used when a campaign names none
DEFAULT_SEGMENT = "all-buyers"

RANGE_RULES = ("days_since_last_order", "days_since_first_order", "orders", "spend")
RULE_KEYS = (
    *RANGE_RULES, "rfm", "bought", "country", "tags", "first_time_buyers", "top_spenders_pct", "drifting",
    "p_alive", "expected_orders_90d", "clv_top_pct", "next_order_within_days",
)  # fmt: skip
#: rules on the stored lifecycle predictions (customers without predictions never match them)
PREDICTION_RULES = ("p_alive", "expected_orders_90d", "clv_top_pct", "next_order_within_days")
RFM_LETTERS = ("r", "f", "m")
GAP_KINDS = ("median", "mean")
_SCORE = re.compile(r"^\s*(?:(>=|<=|>|<|=)?\s*([1-5])|([1-5])\s*-\s*([1-5]))\s*$")


class RuleError(ValueError):
    """A rule problem; ``path`` is the key path inside the rules mapping (for the line number)."""

    def __init__(self, path: tuple[str, ...], message: str) -> None:
        self.path = path
        super().__init__(message)


@dataclass(frozen=True)
class SegmentDef:
    """One named audience: ``rules`` is the validated, normalized rule mapping."""

    name: str
    description: str
    rules: dict[str, Any] = field(default_factory=dict, hash=False)


# --------------------------------------------------------------------------- validation


def _number(path: tuple[str, ...], value: Any, *, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(path, f"must be a number, got {value!r}")
    if value < minimum:
        raise RuleError(path, f"must be at least {minimum:g}, got {value!r}")
    return float(value)


def _range(key: str, value: Any) -> dict[str, float]:
    if not isinstance(value, Mapping) or not value:
        raise RuleError((key,), f"must be a mapping with 'min' and/or 'max', e.g. {{min: 1}}, got {value!r}")
    out: dict[str, float] = {}
    for bound, raw in value.items():
        if bound not in ("min", "max"):
            raise RuleError((key, str(bound)), f"unknown bound {bound!r} (use 'min' and/or 'max')")
        out[bound] = _number((key, bound), raw)
    if "min" in out and "max" in out and out["min"] > out["max"]:
        raise RuleError((key,), f"min ({out['min']:g}) is greater than max ({out['max']:g})")
    return out


def parse_score(path: tuple[str, ...], value: Any) -> tuple[int, int]:
    """An RFM score condition -> inclusive (low, high) in 1..5: ``4``, ``">=4"``, ``"<3"``, ``"2-4"``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    match = _SCORE.match(value) if isinstance(value, str) else None
    if match is None:
        raise RuleError(path, f"must be a score 1-5 like 4, '>=4', '<3' or '2-4', got {value!r}")
    op, n, lo, hi = match.groups()
    if lo is not None:
        low, high = int(lo), int(hi)
    else:
        k = int(n)
        low, high = {
            None: (k, k),
            "=": (k, k),
            ">=": (k, 5),
            ">": (k + 1, 5),
            "<=": (1, k),
            "<": (1, k - 1),
        }[op]
    if low > high:
        raise RuleError(path, f"{value!r} matches no score between 1 and 5")
    return low, high


def _strings(path: tuple[str, ...], value: Any) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise RuleError(path, f"must be a non-empty string or list of strings, got {value!r}")
    return [v.strip() for v in items]


def _bought(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise RuleError(("bought",), f"must be a mapping like {{sku: [...], category: [...]}}, got {value!r}")
    out: dict[str, Any] = {}
    for key, raw in value.items():
        if key in ("sku", "category"):
            out[key] = _strings(("bought", key), raw)
        elif key == "within_days":
            out[key] = _number(("bought", key), raw)
        else:
            raise RuleError(("bought", str(key)), f"unknown key {key!r} (known: sku, category, within_days)")
    if "sku" not in out and "category" not in out:
        raise RuleError(("bought",), "needs 'sku' and/or 'category'")
    return out


def _country(value: Any) -> dict[str, list[str]]:
    if not isinstance(value, Mapping):
        return {"in": _strings(("country",), value)}
    out: dict[str, list[str]] = {}
    for key, raw in value.items():
        if key not in ("in", "not_in"):
            raise RuleError(("country", str(key)), f"unknown key {key!r} (known: in, not_in)")
        out[key] = _strings(("country", key), raw)
    if not out:
        raise RuleError(("country",), "needs 'in' and/or 'not_in'")
    return out


def _tags(value: Any) -> dict[str, list[str]]:
    if not isinstance(value, Mapping):
        return {"any": _strings(("tags",), value)}
    out: dict[str, list[str]] = {}
    for key, raw in value.items():
        if key not in ("any", "none"):
            raise RuleError(("tags", str(key)), f"unknown key {key!r} (known: any, none)")
        out[key] = _strings(("tags", key), raw)
    if not out:
        raise RuleError(("tags",), "needs 'any' and/or 'none'")
    return out


def _drifting(value: Any) -> dict[str, Any]:
    if value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise RuleError(("drifting",), f"must be a mapping like {{factor: 1.5, gap: median}}, got {value!r}")
    out: dict[str, Any] = {"factor": 1.5, "gap": "median"}
    for key, raw in value.items():
        if key == "factor":
            out["factor"] = _number(("drifting", "factor"), raw, minimum=0.1)
        elif key == "gap":
            if raw not in GAP_KINDS:
                raise RuleError(("drifting", "gap"), f"must be one of {', '.join(GAP_KINDS)}, got {raw!r}")
            out["gap"] = raw
        else:
            raise RuleError(("drifting", str(key)), f"unknown key {key!r} (known: factor, gap)")
    return out


def validate_rules(rules: Any) -> dict[str, Any]:
    """Check and normalize a rules mapping; raises RuleError (with the offending key path)."""
    if rules is None:
        return {}
    if not isinstance(rules, Mapping):
        raise RuleError((), f"rules must be a mapping of rule -> value, got {rules!r}")
    out: dict[str, Any] = {}
    for key, value in rules.items():
        path = (str(key),)
        if key in RANGE_RULES:
            out[key] = _range(key, value)
        elif key == "rfm":
            if not isinstance(value, Mapping) or not value:
                raise RuleError(path, f"must be a mapping like {{r: '>=4', f: '>=3'}}, got {value!r}")
            scores = {}
            for letter, cond in value.items():
                if letter not in RFM_LETTERS:
                    raise RuleError((*path, str(letter)), f"unknown score {letter!r} (known: r, f, m)")
                scores[letter] = parse_score((*path, letter), cond)
            out[key] = scores
        elif key == "bought":
            out[key] = _bought(value)
        elif key == "country":
            out[key] = _country(value)
        elif key == "tags":
            out[key] = _tags(value)
        elif key == "first_time_buyers":
            if not isinstance(value, bool):
                raise RuleError(path, f"must be true or false, got {value!r}")
            out[key] = value
        elif key == "top_spenders_pct":
            pct = _number(path, value)
            if not 0 < pct <= 100:
                raise RuleError(path, f"must be a percentage in (0, 100], got {value!r}")
            out[key] = pct
        elif key == "drifting":
            out[key] = _drifting(value)
        elif key in ("p_alive", "expected_orders_90d"):
            out[key] = _range(key, value)
            if key == "p_alive" and any(v > 1 for v in out[key].values()):
                raise RuleError(path, f"is a probability between 0 and 1, got {value!r}")
        elif key == "clv_top_pct":
            pct = _number(path, value)
            if not 0 < pct <= 100:
                raise RuleError(path, f"must be a percentage in (0, 100], got {value!r}")
            out[key] = pct
        elif key == "next_order_within_days":
            out[key] = _number(path, value)
        else:
            raise RuleError(path, f"unknown rule {key!r} (known: {', '.join(RULE_KEYS)})")
    return out


# --------------------------------------------------------------------------- YAML with line numbers


def _plain(node: yaml.Node, lines: dict[tuple[str, ...], int], path: tuple[str, ...]) -> Any:
    """Turn a composed YAML node into plain Python, recording the line of every mapping key."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            lines[(*path, str(key))] = key_node.start_mark.line + 1
            out[key] = _plain(value_node, lines, (*path, str(key)))
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, lines, (*path, str(i))) for i, item in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _line_of(lines: dict[tuple[str, ...], int], path: tuple[str, ...]) -> int:
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def load_segments(path: Path = DEFAULT_SEGMENTS_FILE) -> dict[str, SegmentDef]:
    """Read and validate a segments file: ``name: {description: ..., rules: {...}}`` per segment.

    Raises ConfigError with ``file:line`` for a missing/unreadable file, bad YAML, an unknown rule
    key or a value of the wrong type.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: segments file not found (create it, or pass its path)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the segments file: {exc}") from None
    try:
        from campaigns.definition import yaml_alias

        alias = yaml_alias(text)  # an alias "bomb" would stall every command reading the file
        if alias is not None:
            raise ConfigError(f"{path}:{alias[0] + 1}: YAML {alias[1]}: anchors and aliases are not allowed")
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        lines: dict[tuple[str, ...], int] = {}
        data = _plain(root, lines, ()) if root is not None else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}:1: expected a mapping of segment name -> {{description, rules}}")
    segments: dict[str, SegmentDef] = {}
    for name, body in data.items():
        where = f"{path}:{_line_of(lines, (str(name),))}"
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            raise ConfigError(
                f"{where}: segment name {name!r} must be lower-case letters, digits, '-' or '_'"
            )
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: segment {name!r} must be a mapping with 'description' and 'rules'")
        unknown = set(body) - {"description", "rules"}
        if unknown:
            key = sorted(map(str, unknown))[0]
            raise ConfigError(
                f"{path}:{_line_of(lines, (name, key))}: segment {name!r}: unknown key {key!r} "
                "(known: description, rules)"
            )
        description = body.get("description", "")
        if not isinstance(description, str):
            raise ConfigError(f"{path}:{_line_of(lines, (name, 'description'))}: description must be text")
        try:
            rules = validate_rules(body.get("rules"))
        except RuleError as exc:
            line = _line_of(lines, (name, "rules", *exc.path))
            label = ".".join(exc.path) or "rules"
            raise ConfigError(f"{path}:{line}: segment {name!r}: {label}: {exc}") from None
        segments[name] = SegmentDef(name=name, description=description.strip(), rules=rules)
    return segments


def resolve_segment(
    name_or_rules: str | Mapping[str, Any] | None,
    segments: Mapping[str, SegmentDef],
    *,
    source: str | None = None,
) -> SegmentDef:
    """The segment a campaign asks for: a name from ``segments``, inline rules, or None (all buyers).

    Inline rules may name a base segment with ``segment: NAME``; the rest is ANDed onto it.
    ``source`` (the template path) is used in error messages. Raises NotFoundError for an unknown
    name (listing the known ones) and TemplateError for invalid inline rules.
    """
    if name_or_rules is None:
        name_or_rules = DEFAULT_SEGMENT
    if isinstance(name_or_rules, str):
        found = segments.get(name_or_rules)
        if found is None:
            known = ", ".join(sorted(segments)) or "(none defined)"
            prefix = f"{source}: " if source else ""
            raise NotFoundError(f"{prefix}unknown segment {name_or_rules!r} (known: {known})")
        return found
    if not isinstance(name_or_rules, Mapping):
        raise TemplateError(
            f"segment must be a name or a mapping of rules, got {name_or_rules!r}", template=source
        )
    rules = dict(name_or_rules)
    base_name = rules.pop("segment", None)
    base = resolve_segment(base_name, segments, source=source) if base_name is not None else None
    try:
        extra = validate_rules(rules)
    except RuleError as exc:
        label = ".".join(("segment", *exc.path))
        raise TemplateError(f"{label}: {exc}", template=source) from None
    if base is None:
        return SegmentDef(name="inline", description="inline rules", rules=extra)
    clash = set(base.rules) & set(extra)
    if clash:
        raise TemplateError(
            f"segment: rule {sorted(clash)[0]!r} is already set by segment {base.name!r}; "
            "define a new segment instead",
            template=source,
        )
    return SegmentDef(name=f"{base.name}+inline", description=base.description, rules={**base.rules, **extra})
