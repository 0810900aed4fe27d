"""From customers to wire-ready messages: recommend -> context -> render -> MIME, one batch at a time.

Shared by the runner, ``retain render --customer`` and the web preview, so every path renders the
same email. Everything a batch needs is fetched with a handful of batched store calls and one
batched recommender call; the template only ever sees plain data.

    p = Personalizer(store, settings, definition, recommender, run_key="manual:2011-12-10")
    for item in p.prepare([Member(customer)]):
        item.email.data  # bytes, or item is a Skip with a reason
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any

from campaigns.config import Settings
from campaigns.definition import CampaignDefinition
from campaigns.errors import RenderError
from campaigns.kinds import NoContent, build_context
from campaigns.message import OutgoingEmail, build_message
from campaigns.render import CampaignRenderer, RenderedEmail
from campaigns.store.records import CustomerRecord, OrderRecord, ProductRecord
from campaigns.tokens import unsubscribe_url

#: kinds whose emails are built from the customer's recommendation blocks
RECOMMENDING_KINDS = ("recommendation", "promotion", "winback")
#: how many past orders each kind's context uses (the others get none: no query)
ORDERS_SHOWN = {"winback": 1, "post_purchase": 5}


@dataclass(frozen=True, slots=True)
class Member:
    """One recipient of a run; ``order`` is set for post-purchase follow-ups."""

    customer: CustomerRecord
    order: OrderRecord | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    member: Member
    rendered: RenderedEmail
    email: OutgoingEmail | None  # None when built without a message (dry run)
    top_products: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Skip:
    member: Member
    reason: str  # e.g. no_recommendations


def display_name(customer: CustomerRecord) -> str | None:
    name = " ".join(p for p in (customer.first_name, customer.last_name) if p)
    return name or None


class Personalizer:
    """Prepares one campaign's emails for batches of members (compile once, execute per recipient)."""

    def __init__(
        self,
        store: Any,
        settings: Settings,
        definition: CampaignDefinition,
        recommender: Any | None,
        *,
        run_key: str,
        is_preview: bool = False,
        renderer: CampaignRenderer | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.definition = definition
        self.recommender = recommender
        self.run_key = run_key
        self.is_preview = is_preview
        self.renderer = renderer or CampaignRenderer(definition, settings)
        self._secret = settings.resolved_secret_key()
        #: the campaign's From, or the shop's default sender
        self.from_ = definition.from_ or settings.from_address
        self._from_domain = parseaddr(self.from_)[1].rpartition("@")[2] or "retain.invalid"
        self._rules = definition.recommend.rules()

    def _recommend(self, members: Sequence[Member]) -> dict[int, Any]:
        if self.definition.kind not in RECOMMENDING_KINDS or self.recommender is None:
            return {}
        spec = self.definition.recommend
        ids = [m.customer.id for m in members]
        recs = self.recommender.recommend(ids, blocks=spec.blocks, n=spec.count, rules=self._rules)
        return {r.customer_id: r for r in recs}

    def _similar(self, members: Sequence[Member]) -> dict[int, Any]:
        if self.definition.kind != "post_purchase" or self.recommender is None:
            return {}
        n = self.definition.follow_up.similar_count if self.definition.follow_up else 3
        out: dict[int, Any] = {}
        for m in members:
            if m.order is not None:
                bought = [line.product.id for line in m.order.lines]
                out[m.order.id] = self.recommender.similar_items(bought, n=n, rules=self._rules)
        return out

    def _orders(self, members: Sequence[Member]) -> dict[int, list[OrderRecord]]:
        """Past orders, only for kinds that show them (winback: the last one; post-purchase: recent)."""
        limit = ORDERS_SHOWN.get(self.definition.kind, 0)
        if not limit:
            return {}
        return self.store.orders_for_customers([m.customer.id for m in members], limit_per_customer=limit)

    def prepare(self, members: Sequence[Member], *, build_messages: bool = True) -> list[Prepared | Skip]:
        """Render every member's email; RenderError (naming template and customer) stops the batch."""
        if not members:
            return []
        recs = self._recommend(members)
        similar = self._similar(members)
        orders = self._orders(members)
        product_ids: set[int] = set()
        for rec in recs.values():
            for block in rec.blocks:
                product_ids.update(item.product_id for item in block.items)
        for block in similar.values():
            product_ids.update(item.product_id for item in block.items)
        products: dict[int, ProductRecord] = self.store.products_by_ids(product_ids) if product_ids else {}
        out: list[Prepared | Skip] = []
        for m in members:
            c = m.customer
            try:
                context = build_context(
                    self.definition,
                    self.settings,
                    customer=c,
                    recommendation=recs.get(c.id),
                    products=products,
                    orders=orders.get(c.id, []),
                    order=m.order,
                    similar=similar.get(m.order.id) if m.order else None,
                    run_key=self.run_key,
                    is_preview=self.is_preview,
                )
            except NoContent as exc:
                out.append(Skip(m, exc.reason))
                continue
            try:
                rendered = self.renderer.render(context)
            except RenderError as exc:
                raise RenderError(
                    f"{exc} (while rendering for customer {c.id} / {c.external_id})", template=None
                ) from exc
            email = self.build_email(c, rendered) if build_messages else None
            out.append(Prepared(m, rendered, email, _top_products(context)))
        return out

    def build_email(
        self, customer: CustomerRecord, rendered: RenderedEmail, *, subject_prefix: str = ""
    ) -> OutgoingEmail:
        if subject_prefix:
            rendered = RenderedEmail(
                subject=subject_prefix + rendered.subject,
                preheader=rendered.preheader,
                html=rendered.html,
                text=rendered.text,
            )
        return build_message(
            rendered,
            to_email=customer.email or "",
            to_name=display_name(customer),
            from_=self.from_,
            list_unsubscribe_url=unsubscribe_url(
                self.settings.public_url, self._secret, customer_id=customer.id, campaign=self.definition.name
            ),
            list_unsubscribe_mailto=self.settings.unsubscribe_mailto or None,
            campaign=self.definition.name,
            run_key=self.run_key,
            message_id_domain=self._from_domain,
        )


def _top_products(context: dict[str, Any]) -> tuple[str, ...]:
    """Names of the first three products shown (every kind lists its cards under ``blocks``), for reports."""
    names = [card["name"] for block in context.get("blocks") or [] for card in block["products"]]
    return tuple(names[:3])
