"""The email factory: campaign + recipient -> context -> rendered email -> wire message. One path.

Every way Retain makes an email goes through :class:`EmailFactory`: ``retain send`` (local and on
Celery workers), scheduled runs and follow-up ticks, ``retain render`` (html / text / eml), ``retain
lint``, the preview pages and the preview's "send test". What differs between them is a
:class:`BuildOptions` value, never a second code path:

==================  =========================================================================
option              used by
==================  =========================================================================
``run_key``         every path (the Message-ID and X-Retain-Run derive from it)
``preview``         preview, render, lint: the layout's preview banner (context ``is_preview``)
``subject_prefix``  the preview's test send ("[TEST] ")
``messages``        False for dry runs and HTML-only previews: no wire bytes are built
``issued_at``       the Date header and the issue time of the signed links (None: the real clock,
                    read once per batch, so an email's links and its Date agree); pinned in tests
``refuse_oversized``  False for ``lint``, which measures the email instead (see below)
``track_clicks``    real sends (runner, Celery batches): links become signed ``/c/`` redirects
                    (campaigns/tracking.py) unless the campaign says ``track_clicks: false``
==================  =========================================================================

An email whose HTML is above the ``max_email_kb`` setting (Gmail clips at ~102 KB and hides what
follows, the unsubscribe footer included) is not built for sending: it becomes a :class:`Skip` with
reason ``email too large (HTML over 100 KB)``. Previews, ``render`` and ``lint`` still render it, and
``lint`` reports it.

For a batch of members the factory fetches exactly what the campaign's kind declares it needs
(:class:`campaigns.kinds.DataNeeds`) with a handful of batched store calls and one batched
recommender call, builds each context through the kind, renders it (compile once, execute per
recipient), and builds the message: From (the campaign's or the shop's), To, Reply-To, Subject, Date,
Message-ID, List-Unsubscribe + List-Unsubscribe-Post, the UTM-tagged links of the context and, when
configured, the DKIM signature::

    factory = EmailFactory(settings, definition, catalogue=store, recommender=model,
                           options=BuildOptions(run_key="manual:2011-12-10"))
    for item in factory.prepare([Member(customer)]):
        item.email.data  # bytes, or item is a Skip with a reason

A preview fixture goes through :meth:`EmailFactory.prepare_inputs` with inputs read from the fixture
file instead of the store and the model; everything after that is the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from typing import Any, Protocol

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition
from campaigns.errors import ModelError, NotFoundError, RenderError
from campaigns.kinds import ContextInputs, Member, ModelUse, NoContent, build_context
from campaigns.message import DkimConfig, OutgoingEmail, build_message
from campaigns.render import CampaignRenderer, RenderedEmail
from campaigns.store.protocols import Catalogue
from campaigns.store.records import (
    CustomerRecord,
    OrderRecord,
    ProductEventRecord,
    ProductRecord,
    PurchaseHistory,
)
from campaigns.tracking import LinkRewriter
from campaigns.variants import default_variant, variant_context, variant_definition
from recommender.blocks import Block, Recommendation
from recommender.rules import Rules


class Recommends(Protocol):
    """The two calls the factory makes to a trained recommender (recommender.service.RetainRecommender)."""

    def recommend(
        self, customer_ids: Sequence[int], *, blocks: Sequence[str], n: int, rules: Rules | None
    ) -> list[Recommendation]: ...

    def similar_items(self, product_ids: Sequence[int], *, n: int, rules: Rules | None) -> Block: ...


@dataclass(frozen=True, slots=True)
class BuildOptions:
    """How the factory differs between its users; see the module docstring's table."""

    run_key: str
    preview: bool = False
    subject_prefix: str = ""
    messages: bool = True
    issued_at: datetime | None = None
    refuse_oversized: bool = True
    track_clicks: bool = False


@dataclass(frozen=True, slots=True)
class Prepared:
    """One recipient's email: the context the template saw, the rendered parts, the wire message."""

    member: Member
    inputs: ContextInputs
    context: dict[str, Any]
    rendered: RenderedEmail
    email: OutgoingEmail | None  # None when built without messages (dry run, HTML-only preview)

    @property
    def top_products(self) -> tuple[str, ...]:
        """Names of the first three products shown (every kind lists its cards under ``blocks``)."""
        names = [card["name"] for block in self.context.get("blocks") or [] for card in block["products"]]
        return tuple(names[:3])


@dataclass(frozen=True, slots=True)
class Skip:
    """A recipient who gets no email from this campaign; ``reason`` e.g. ``no recommendations``."""

    member: Member
    reason: str


def wall_clock() -> datetime:
    """Now, aware UTC (the factory's default clock; tests pin it)."""
    return datetime.now(UTC)


def campaign_recommender(
    definition: CampaignDefinition, settings: Settings, catalogue: Catalogue
) -> Recommends | None:
    """The trained model, as far as the campaign's kind needs it (``kind.needs.model``).

    None for a kind that never asks it, and for one that can do without it when there is no usable model
    (a thank-you without similar items); for a kind that requires it, NotFoundError / ModelError say to
    run `retain train`.
    """
    use = definition.kind_plugin.needs.model
    if use is ModelUse.NONE:
        return None
    from campaigns.training import load_recommender

    try:
        return load_recommender(settings, catalogue)
    except (NotFoundError, ModelError):
        if use is ModelUse.REQUIRED:
            raise
        return None


def html_kb(rendered: RenderedEmail) -> float:
    """The email's HTML size in KB (1,024 bytes of UTF-8), as a mail client measures it."""
    return len(rendered.html.encode()) / 1024


def too_large(rendered: RenderedEmail, settings: Settings) -> bool:
    """Above the ``max_email_kb`` setting (Gmail clips HTML above ~102 KB)."""
    return html_kb(rendered) > settings.max_email_kb


def display_name(customer: CustomerRecord) -> str | None:
    name = " ".join(p for p in (customer.first_name, customer.last_name) if p)
    return name or None


class EmailFactory:
    """Builds one campaign's emails (see the module docstring). Thread-compatible, not thread-safe."""

    def __init__(
        self,
        settings: Settings,
        definition: CampaignDefinition,
        *,
        catalogue: Catalogue | None,
        recommender: Recommends | None,
        options: BuildOptions,
        renderer: CampaignRenderer | None = None,
    ) -> None:
        self.settings = settings
        self.definition = definition
        self.kind = definition.kind_plugin
        self.catalogue = catalogue
        self.recommender = recommender
        self.options = options
        self.renderer = renderer or CampaignRenderer(definition, settings)
        #: the campaign's From, or the shop's default sender
        self.from_ = definition.from_ or settings.from_address
        self._from_domain = parseaddr(self.from_)[1].rpartition("@")[2] or "retain.invalid"
        self._rules = definition.recommend.rules()
        self._dkim: DkimConfig | None | bool = False  # False: not read yet (read on the first message)
        # Organization names the shop (and tells SpamAssassin's SHOPIFY_IMG_NOT_RCVD_SFY that a shop
        # showing its own Shopify-hosted images is not hot-linking them; docs/checks.md)
        self._headers = {"Organization": settings.shop_name} if settings.shop_name.strip() else {}
        #: A/B variants: one factory per variant (its subject, offer, strategy, compiled template)
        self._variant_of: str | None = None
        self._variants: dict[str, EmailFactory] = {}
        reply_to = definition.reply_to or settings.reply_to
        if reply_to:
            self._headers["Reply-To"] = reply_to

    # ------------------------------------------------------------------ inputs

    def inputs(self, members: Sequence[Member]) -> list[ContextInputs]:
        """What each member's context is built from, fetched in a few batched calls (kind.needs)."""
        needs = self.kind.needs
        recs = self._recommend(members) if needs.recommendations else {}
        similar = self._similar(members) if needs.similar_to_order else {}
        orders: dict[int, list[OrderRecord]] = {}
        if needs.orders and self.catalogue is not None:
            orders = self.catalogue.orders_for_customers(
                [m.customer.id for m in members], limit_per_customer=needs.orders
            )
        events: list[ProductEventRecord] = []
        bought: dict[int, PurchaseHistory] = {}
        if needs.catalogue_events_days and self.catalogue is not None:
            # events are stamped with the real time of the catalogue import that found them
            now = (self.options.issued_at or wall_clock()).astimezone(UTC).replace(tzinfo=None)
            events = self.catalogue.product_events(since=now - timedelta(days=needs.catalogue_events_days))
            bought = self.catalogue.purchase_history([m.customer.id for m in members])
        wanted: set[int] = {e.product_id for e in events}
        for rec in recs.values():
            for block in rec.blocks:
                wanted.update(item.product_id for item in block.items)
        for block in similar.values():
            wanted.update(item.product_id for item in block.items)
        products: Mapping[int, ProductRecord] = (
            self.catalogue.products_by_ids(wanted) if wanted and self.catalogue is not None else {}
        )
        return [
            ContextInputs(
                customer=m.customer,
                recommendation=recs.get(m.customer.id),
                products=products,
                orders=orders.get(m.customer.id, ()),
                order=m.order,
                similar=similar.get(m.order.id) if m.order is not None else None,
                events=events,
                bought=bought.get(m.customer.id) if needs.catalogue_events_days else None,
            )
            for m in members
        ]

    def _recommend(self, members: Sequence[Member]) -> dict[int, Recommendation]:
        if self.recommender is None or not members:
            return {}
        spec = self.definition.recommend
        ids = [m.customer.id for m in members]
        recs = self.recommender.recommend(ids, blocks=spec.blocks, n=spec.count, rules=self._rules)
        return {r.customer_id: r for r in recs}

    def _similar(self, members: Sequence[Member]) -> dict[int, Block]:
        if self.recommender is None:
            return {}
        spec = self.definition.follow_up
        n = spec.similar_count if spec else self.definition.recommend.count
        out: dict[int, Block] = {}
        for m in members:
            if m.order is not None and m.order.id not in out:
                bought = [line.product.id for line in m.order.lines]
                out[m.order.id] = self.recommender.similar_items(bought, n=n, rules=self._rules)
        return out

    # ------------------------------------------------------------------ building

    def for_variant(self, name: str | None) -> EmailFactory:
        """The factory building variant ``name`` (None: the default variant; this factory without variants)."""
        if not self.definition.variants or self._variant_of is not None:
            return self
        name = name or default_variant(self.definition)
        assert name is not None
        sub = self._variants.get(name)
        if sub is None:
            sub = EmailFactory(
                self.settings,
                variant_definition(self.definition, name),
                catalogue=self.catalogue,
                recommender=self.recommender,
                options=self.options,
            )
            sub._variant_of = name
            self._variants[name] = sub
        return sub

    def prepare(self, members: Sequence[Member]) -> list[Prepared | Skip]:
        """Every member's email, in order. RenderError (naming template and customer) stops the batch."""
        if not members:
            return []
        if self.definition.variants and self._variant_of is None:
            groups: dict[str, list[int]] = {}
            for i, m in enumerate(members):
                groups.setdefault(m.variant or default_variant(self.definition) or "", []).append(i)
            out: list[Prepared | Skip | None] = [None] * len(members)
            for name, idxs in groups.items():
                built = self.for_variant(name).prepare([replace(members[i], variant=name) for i in idxs])
                for i, item in zip(idxs, built, strict=True):
                    out[i] = item
            return [item for item in out if item is not None]
        return [
            self.prepare_inputs(m, inputs) for m, inputs in zip(members, self.inputs(members), strict=True)
        ]

    def prepare_inputs(self, member: Member, inputs: ContextInputs) -> Prepared | Skip:
        """One member's email from inputs already at hand (a preview fixture, or :meth:`inputs`)."""
        if self.definition.variants and self._variant_of is None:
            name = member.variant or default_variant(self.definition)
            return self.for_variant(name).prepare_inputs(replace(member, variant=name), inputs)
        if inputs.issued_at is None:
            inputs = replace(inputs, issued_at=self._stamp())
        try:
            context = build_context(
                self.definition,
                self.settings,
                inputs,
                run_key=self.options.run_key,
                is_preview=self.options.preview,
            )
        except NoContent as exc:
            return Skip(member, exc.reason)
        context["variant"] = variant_context(self.definition, member.variant)
        if member.coupon is not None:
            # the recipient's own single-use code, wherever the template shows the offer's code
            context["coupon_code"] = member.coupon
            if isinstance(context.get("promotion"), dict):
                context["promotion"] = {**context["promotion"], "code": member.coupon}
        customer = inputs.customer
        try:
            rendered = self.renderer.render(context)
        except RenderError as exc:
            raise RenderError(
                f"{exc} (while rendering for customer {customer.id} / {customer.external_id})", template=None
            ) from exc
        if self.options.track_clicks and self.definition.track_clicks and self.options.messages:
            # before the size check: the tracked links are what the inbox measures
            rendered = self._tracked(rendered, customer.id, inputs.issued_at, variant=member.variant)
        if self.options.refuse_oversized and not self.options.preview and too_large(rendered, self.settings):
            # a clipped email hides the footer with the unsubscribe link: refuse it, never send it clipped
            return Skip(member, f"email too large (HTML over {self.settings.max_email_kb} KB)")
        if self.options.subject_prefix:
            rendered = replace(rendered, subject=self.options.subject_prefix + rendered.subject)
        issued = datetime.fromtimestamp(inputs.issued_at, UTC) if inputs.issued_at is not None else None
        email = self.message(customer, rendered, context, issued_at=issued) if self.options.messages else None
        return Prepared(member, inputs, context, rendered, email)

    def message(
        self,
        customer: CustomerRecord,
        rendered: RenderedEmail,
        context: Mapping[str, Any],
        *,
        to_email: str | None = None,
        issued_at: datetime | None = None,
    ) -> OutgoingEmail:
        """The wire message for ``customer`` (or to ``to_email`` instead of their address), dated
        ``issued_at`` (default: the options' clock, else now).

        Raises SenderError(permanent=True) for an address that cannot be mailed, ConfigError for a bad
        From, Reply-To or DKIM setting.
        """
        return build_message(
            rendered,
            to_email=to_email if to_email is not None else (customer.email or ""),
            to_name=display_name(customer),
            from_=self.from_,
            list_unsubscribe_url=str(context["unsubscribe_url"]),
            list_unsubscribe_mailto=self.settings.unsubscribe_mailto or None,
            campaign=self.definition.name,
            run_key=self.options.run_key,
            message_id_domain=self._from_domain,
            extra_headers=self._headers,
            dkim=self._dkim_config(),
            date=issued_at or self.options.issued_at or wall_clock(),
        )

    def _tracked(
        self, rendered: RenderedEmail, customer_id: int, issued_at: float | None, *, variant: str | None
    ) -> RenderedEmail:
        """The email with its links rewritten to signed click redirects (HTML and text share tokens)."""
        rewriter = LinkRewriter(
            self.settings.resolved_secret_key(),
            self.settings.public_url,
            customer_id=customer_id,
            campaign=self.definition.name,
            run_key=self.options.run_key,
            variant=variant,
            issued_at=issued_at,
        )
        return replace(rendered, html=rewriter.html(rendered.html), text=rewriter.text(rendered.text))

    def _stamp(self) -> float:
        return (self.options.issued_at or wall_clock()).timestamp()

    def _dkim_config(self) -> DkimConfig | None:
        if self._dkim is False:
            self._dkim = DkimConfig.from_settings(self.settings)
        return self._dkim if isinstance(self._dkim, DkimConfig) else None

    def with_options(self, **changes: Any) -> EmailFactory:
        """The same campaign, renderer and data sources with other options (e.g. a test send)."""
        return EmailFactory(
            self.settings,
            self.definition,
            catalogue=self.catalogue,
            recommender=self.recommender,
            options=replace(self.options, **changes),
            renderer=self.renderer,
        )


__all__ = [
    "BuildOptions",
    "EmailFactory",
    "Prepared",
    "Recommends",
    "Skip",
    "campaign_recommender",
    "display_name",
    "html_kb",
    "too_large",
]
