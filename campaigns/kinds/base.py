"""The CampaignKind protocol: what a kind of campaign declares, and the records that cross it.

A kind is a plug-in (one module in this package with a module-level ``KIND``, or any object named by
dotted path in front matter, ``kind: myshop.kinds:BIRTHDAY``). The engine never compares kind names; it
asks the kind:

- ``options``: the front-matter keys it accepts beyond the common ones, each parsed and validated
  through an :class:`OptionSpec` (errors name ``file:line``);
- ``needs``: the data its context uses (:class:`DataNeeds`): recommendation blocks, items similar to
  the member's order, past orders; the email factory fetches exactly that, batched;
- ``audience``: who it goes to, when that is not the campaign's segment (post-purchase: orders that
  are due); ``None`` means "the segment"; ``ticks_without_schedule`` makes the scheduler look for due
  recipients every hour when the campaign has no schedule of its own;
- ``preview_members``: candidates for the preview's "random customer";
- ``context``: the template context for one recipient from plain records (no queries); raising
  :class:`NoContent` skips that recipient with a reason.

:class:`KindBase` gives the defaults, so a kind is usually a ``name``, a ``needs`` and a ``context``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from campaigns.store.records import (
    CustomerRecord,
    OrderRecord,
    ProductEventRecord,
    ProductRecord,
    PurchaseHistory,
)
from recommender.blocks import Block, Recommendation

if TYPE_CHECKING:
    from campaigns.config import Settings
    from campaigns.definition import CampaignDefinition, FrontMatter
    from campaigns.store.protocols import AudienceStore


class NoContent(Exception):  # noqa: N818 - a skip signal, not an error
    """This customer would get an empty email; ``reason`` says why (e.g. "no recommendations")."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True, slots=True)
class Member:
    """One recipient of a run; ``order`` is the order a follow-up is about (one per order per campaign)."""

    customer: CustomerRecord
    order: OrderRecord | None = None
    #: the A/B variant this recipient was assigned (campaigns/variants.py); None: no variants
    variant: str | None = None
    #: this recipient's unique coupon code for the run (campaigns/coupons.py); None: the campaign's own code
    coupon: str | None = None


class ModelUse(StrEnum):
    """How a kind depends on the trained recommender."""

    NONE = "none"  # never asks it
    OPTIONAL = "optional"  # uses it when there is one (e.g. similar items under a thank-you)
    REQUIRED = "required"  # cannot send without it


@dataclass(frozen=True, slots=True)
class DataNeeds:
    """The data a kind's context reads, fetched for a whole batch before any context is built.

    ``recommendations``: the customer's blocks named by the campaign's ``recommend`` (one batched call);
    ``similar_to_order``: items bought with the member's order; ``orders``: how many of the customer's
    latest orders (newest first); ``catalogue_events_days``: the catalogue's product events (back in
    stock, price drop ...) of the last that many days, with their products, and each customer's purchase
    history (``bought``) to match them against (0: none).
    """

    recommendations: bool = False
    similar_to_order: bool = False
    orders: int = 0
    catalogue_events_days: int = 0

    @property
    def model(self) -> ModelUse:
        if self.recommendations:
            return ModelUse.REQUIRED
        return ModelUse.OPTIONAL if self.similar_to_order else ModelUse.NONE


@dataclass(frozen=True, slots=True)
class ContextInputs:
    """Everything one recipient's context is built from (plain records).

    ``products`` holds every product named by ``recommendation``, ``similar`` and ``events`` (order lines
    carry their own product records); ``orders`` are newest first; ``order`` is the member's order;
    ``events`` the catalogue's recent product events, oldest first, and ``bought`` what the customer has
    ever bought (both only for kinds whose ``needs.catalogue_events_days`` asks for them).
    ``issued_at`` (Unix seconds) is when the email's signed links are issued: the email factory sets it
    to its clock, so one email's links and its Date header agree (None: the moment of signing).
    """

    customer: CustomerRecord
    recommendation: Recommendation | None = None
    products: Mapping[int, ProductRecord] = field(default_factory=dict)
    orders: Sequence[OrderRecord] = ()
    order: OrderRecord | None = None
    similar: Block | None = None
    issued_at: float | None = None
    events: Sequence[ProductEventRecord] = ()
    bought: PurchaseHistory | None = None


@dataclass(frozen=True, slots=True)
class AudienceRequest:
    """What an audience hook may use: the store's audience protocol, settings, the campaign, the clock."""

    store: AudienceStore
    settings: Settings
    definition: CampaignDefinition
    now: datetime  # naive UTC
    segments_file: Path | None = None


@dataclass(frozen=True, slots=True)
class OptionSpec:
    """One front-matter key a kind accepts.

    ``parse(front_matter, key)`` returns the validated value (raising through ``front_matter.fail``);
    ``default()`` gives the value when the key is absent (None: the option stays unset); ``required``
    keys must be present, and ``hint`` says what to write.
    """

    parse: Callable[[FrontMatter, str], Any]
    required: bool = False
    default: Callable[[], Any] | None = None
    hint: str = ""


@runtime_checkable
class CampaignKind(Protocol):
    """A kind of campaign; see the module docstring."""

    name: str
    description: str
    needs: DataNeeds
    options: Mapping[str, OptionSpec]
    #: may the campaign say ``marketing: false`` (a transactional follow-up, exempt from the frequency cap)
    transactional: bool
    #: the audience becomes due over time (orders N days old): without a schedule, check it every hour
    ticks_without_schedule: bool

    def audience(self, request: AudienceRequest) -> Iterator[list[Member]] | None: ...

    def preview_members(self, request: AudienceRequest, limit: int) -> list[Member] | None: ...

    def context(
        self,
        definition: CampaignDefinition,
        settings: Settings,
        base: dict[str, Any],
        inputs: ContextInputs,
    ) -> dict[str, Any]: ...


class KindBase:
    """Defaults for a kind: no extra options, segment audience, no data beyond the customer."""

    name: str = ""
    description: str = ""
    needs: DataNeeds = DataNeeds()
    options: Mapping[str, OptionSpec] = {}
    transactional: bool = False
    ticks_without_schedule: bool = False

    def audience(self, request: AudienceRequest) -> Iterator[list[Member]] | None:
        """None: the campaign's segment is the audience."""
        return None

    def preview_members(self, request: AudienceRequest, limit: int) -> list[Member] | None:
        """None: the preview samples the campaign's segment."""
        return None

    def context(
        self,
        definition: CampaignDefinition,
        settings: Settings,
        base: dict[str, Any],
        inputs: ContextInputs,
    ) -> dict[str, Any]:
        raise NotImplementedError


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
]
