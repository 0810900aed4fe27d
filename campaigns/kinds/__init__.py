"""Campaign kinds: the registry, and the one function that builds a recipient's context.

Every module of this package that defines a module-level ``KIND`` is a built-in kind, registered under
``KIND.name`` (recommendation, promotion, post_purchase, winback, first_purchase ...): adding a kind is
adding a module and its template. A campaign may also name any kind by dotted path
(``kind: myshop.kinds:BIRTHDAY`` or ``myshop.kinds.BIRTHDAY``). See :mod:`campaigns.kinds.base` for the
protocol; :func:`build_context` is what the email factory, the preview fixtures and the tests call.

The context is plain dicts, lists and display-ready strings (prices formatted, links UTM-tagged,
dates written out), so the templates only print and loop; see docs/templates.md for every key.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import threading
from typing import TYPE_CHECKING, Any

from campaigns.errors import NotFoundError
from campaigns.kinds.base import (
    AudienceRequest,
    CampaignKind,
    ContextInputs,
    DataNeeds,
    KindBase,
    Member,
    ModelUse,
    NoContent,
    OptionSpec,
)

if TYPE_CHECKING:
    from campaigns.config import Settings
    from campaigns.definition import CampaignDefinition

#: modules of this package that are not kinds
_NOT_KINDS = frozenset({"base", "common", "fixture"})
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*[.:][A-Za-z_]\w*$")
_lock = threading.Lock()
_builtin: dict[str, CampaignKind] | None = None


def builtin_kinds() -> dict[str, CampaignKind]:
    """The kinds shipped in this package, by name (discovered once per process)."""
    global _builtin
    with _lock:
        if _builtin is None:
            found: dict[str, CampaignKind] = {}
            for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
                if info.name.startswith("_") or info.name in _NOT_KINDS:
                    continue
                module = importlib.import_module(f"{__name__}.{info.name}")
                kind = getattr(module, "KIND", None)
                if isinstance(kind, CampaignKind):
                    found[kind.name] = kind
            _builtin = found
        return dict(_builtin)


def kind_names() -> list[str]:
    return sorted(builtin_kinds())


def resolve_kind(spec: str | CampaignKind) -> CampaignKind:
    """The kind named ``spec`` (a built-in name or a dotted path), or a kind object passed through.

    Raises NotFoundError naming the known kinds.
    """
    if not isinstance(spec, str):
        return spec
    kinds = builtin_kinds()
    if spec in kinds:
        return kinds[spec]
    if _DOTTED.match(spec):
        module_name, _, attr = spec.rpartition(":") if ":" in spec else spec.rpartition(".")
        try:
            target = getattr(importlib.import_module(module_name), attr, None)
        except ImportError as exc:
            raise NotFoundError(f"kind {spec!r}: cannot import {module_name!r} ({exc})") from None
        if isinstance(target, type):
            target = target()
        if isinstance(target, CampaignKind):
            return target
        raise NotFoundError(
            f"kind {spec!r} is not a campaign kind (it needs name, description, needs, options, "
            "transactional, audience, preview_members and context; see campaigns/kinds/base.py)"
        )
    raise NotFoundError(f"unknown kind {spec!r} (known: {', '.join(sorted(kinds))}, or a dotted path)")


def build_context(
    definition: CampaignDefinition,
    settings: Settings,
    inputs: ContextInputs,
    *,
    run_key: str = "preview",
    is_preview: bool = False,
) -> dict[str, Any]:
    """The template context for one recipient of ``definition``; raises NoContent to skip them."""
    from campaigns.kinds.common import base_context

    base = base_context(
        definition,
        settings,
        inputs.customer,
        run_key=run_key,
        is_preview=is_preview,
        issued_at=inputs.issued_at,
    )
    return definition.kind_plugin.context(definition, settings, base, inputs)


__all__ = [
    "AudienceRequest",
    "CampaignKind",
    "ContextInputs",
    "DataNeeds",
    "KindBase",
    "Member",
    "ModelUse",
    "NoContent",
    "OptionSpec",
    "build_context",
    "builtin_kinds",
    "kind_names",
    "resolve_kind",
]
