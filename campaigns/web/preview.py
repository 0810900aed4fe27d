"""What the preview shows, without HTTP: campaign list, one rendered email, test sends.

:class:`PreviewService` renders through the same :class:`~campaigns.personalize.Personalizer` the
runner uses (real recommendations, real context, real MIME headers), with the templates run in
Jinja's sandbox (:mod:`campaigns.web.sandbox`). It never writes a delivery: a test send is recorded
as an event of kind ``test_send``.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from campaigns.clock import reference_now
from campaigns.config import Settings
from campaigns.definition import CampaignDefinition, campaign_paths, find_campaign, load_campaign
from campaigns.eligibility import judge_batch
from campaigns.errors import ConfigError, NotFoundError, RetainError, SenderError
from campaigns.kinds import NoContent, build_context
from campaigns.kinds.fixture import load_fixture
from campaigns.personalize import RECOMMENDING_KINDS, Member, Personalizer, Prepared
from campaigns.render import RenderedEmail
from campaigns.segments import (
    count_segment,
    load_segments,
    resolve_segment,
    sample_segment,
)
from campaigns.store.records import CustomerRecord
from campaigns.web.checks import EmailWarning, email_warnings
from campaigns.web.sandbox import SandboxedRenderer

#: seconds a segment size stays cached (counting a segment scans the orders)
SEGMENT_CACHE_SECONDS = 60.0


@dataclass(frozen=True)
class CampaignSummary:
    name: str
    kind: str
    segment: str
    segment_size: int | None
    schedule: str
    marketing: bool
    problems: list[str]
    file: str


@dataclass(frozen=True)
class RecommendationLine:
    block: str
    product: str
    reason: str | None
    score: float


@dataclass
class PreviewResult:
    """One rendered preview; ``error`` or ``skip_reason`` set when there is no email to show."""

    campaign: str
    kind: str
    source_label: str  # "preview fixture" or "customer 42 (shop id 17850)"
    customer_id: int | None
    rendered: RenderedEmail | None = None
    from_: str = ""
    headers: str = ""
    warnings: list[EmailWarning] = field(default_factory=list)
    html_bytes: int = 0
    recommendations: list[RecommendationLine] = field(default_factory=list)
    eligibility: str | None = None
    skip_reason: str | None = None
    error: str | None = None
    sources: list[tuple[str, str]] = field(default_factory=list)  # (file name, text)


@dataclass(frozen=True)
class TestSendResult:
    ok: bool
    detail: str


class PreviewService:
    """Preview operations for the web app (thread-safe enough for a local, single-user tool)."""

    def __init__(
        self,
        store: Any,
        settings: Settings,
        *,
        segments_file: Path | None = None,
        recommender: Any | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.templates_dir = Path(settings.templates_dir)
        self.segments_file = Path(segments_file or settings.segments_file)
        self._recommender = recommender
        self._recommender_error: str | None = None
        self._recommender_tried = recommender is not None
        self._lock = threading.Lock()
        self._segment_sizes: dict[str, tuple[float, int | None]] = {}
        self._lint_cache: dict[str, tuple[float, list[str]]] = {}

    # ------------------------------------------------------------------ recommender

    def recommender(self) -> Any | None:
        """The trained model, loaded once; None (with :attr:`recommender_error`) when there is none."""
        with self._lock:
            if not self._recommender_tried:
                self._recommender_tried = True
                try:
                    from campaigns.training import load_recommender

                    self._recommender = load_recommender(self.settings, self.store)
                except RetainError as exc:
                    self._recommender_error = str(exc)
            return self._recommender

    @property
    def recommender_error(self) -> str | None:
        self.recommender()
        return self._recommender_error

    # ------------------------------------------------------------------ campaigns

    def campaigns(self) -> list[CampaignSummary]:
        """Every campaign file with kind, segment (and its size now), schedule and lint problems."""
        out: list[CampaignSummary] = []
        for path in campaign_paths(self.templates_dir):
            problems = self._lint(path)
            try:
                d = load_campaign(path)
            except RetainError:
                out.append(CampaignSummary(path.stem, "?", "", None, "", True, problems, path.name))
                continue
            segment = d.segment or ("inline rules" if d.segment_rules else "all-buyers")
            size = None if d.kind == "post_purchase" else self._segment_size(d)
            schedule = d.schedule.describe() if d.schedule else "manual"
            out.append(
                CampaignSummary(d.name, d.kind, segment, size, schedule, d.marketing, problems, path.name)
            )
        return out

    def _lint(self, path: Path) -> list[str]:
        stamp = self._templates_stamp()
        cached = self._lint_cache.get(str(path))
        if cached and cached[0] == stamp:
            return cached[1]
        from campaigns.cli.content import lint_campaign  # the same checks as `retain lint`

        problems = [p.replace(str(self.templates_dir) + "/", "") for p in lint_campaign(path, self.settings)]
        self._lint_cache[str(path)] = (stamp, problems)
        return problems

    def _templates_stamp(self) -> float:
        return max((p.stat().st_mtime for p in self.templates_dir.rglob("*") if p.is_file()), default=0.0)

    def _segment_size(self, d: CampaignDefinition) -> int | None:
        key = repr(d.segment_rules or d.segment)
        cached = self._segment_sizes.get(key)
        if cached and time.monotonic() - cached[0] < SEGMENT_CACHE_SECONDS:
            return cached[1]
        try:
            segment = resolve_segment(d.segment_rules or d.segment, load_segments(self.segments_file))
            size: int | None = count_segment(
                self.store, segment, now=reference_now(self.settings, self.store)
            )
        except RetainError:
            size = None
        self._segment_sizes[key] = (time.monotonic(), size)
        return size

    def definition(self, name: str) -> CampaignDefinition:
        return find_campaign(self.templates_dir, name)

    # ------------------------------------------------------------------ customers

    def find_customer(self, query: str) -> CustomerRecord:
        """A customer by database id, shop id or email; NotFoundError otherwise."""
        query = query.strip()
        found = self.store.get_customer(query) if query else None
        if found is None:
            raise NotFoundError(
                f"no customer {query!r} (give a database id, the shop's customer id or an email)"
            )
        return found

    def random_customer(self, name: str) -> CustomerRecord:
        """A random member of the campaign's segment (among its first 500), or a recent buyer for follow-ups."""
        d = self.definition(name)
        now = reference_now(self.settings, self.store)
        if d.kind == "post_purchase":
            spec = d.follow_up
            days = spec.days_after_order + spec.window_days if spec else 10
            orders = self.store.orders_between(now - timedelta(days=max(days, 30)), now)
            if not orders:
                raise NotFoundError("no orders in the last 30 days to follow up")
            customer = self.store.customers_by_ids([random.choice(orders)[1]])
            return next(iter(customer.values()))
        segment = resolve_segment(d.segment_rules or d.segment, load_segments(self.segments_file))
        members = sample_segment(self.store, segment, now=now, limit=500)
        if not members:
            raise NotFoundError(f"segment {segment.name!r} is empty right now")
        return random.choice(members).customer

    # ------------------------------------------------------------------ rendering

    def _personalizer(self, d: CampaignDefinition) -> Personalizer:
        return Personalizer(
            self.store,
            self.settings,
            d,
            self.recommender(),
            run_key="preview",
            is_preview=True,
            renderer=SandboxedRenderer(d, self.settings),
        )

    def render(self, name: str, customer_id: int | None = None) -> PreviewResult:
        """The campaign rendered for ``customer_id`` (None: the preview fixture). Errors become ``error``."""
        try:
            d = self.definition(name)
        except RetainError as exc:
            return PreviewResult(name, "?", "", customer_id, error=str(exc))
        result = PreviewResult(d.name, d.kind, "preview fixture", customer_id, sources=_sources(d))
        try:
            if customer_id is None:
                self._render_fixture(d, result)
            else:
                self._render_customer(d, customer_id, result)
        except RetainError as exc:
            result.error = str(exc)
        if result.rendered is not None:
            result.warnings = email_warnings(result.rendered.html)
            result.html_bytes = len(result.rendered.html.encode("utf-8"))
        return result

    def _render_fixture(self, d: CampaignDefinition, result: PreviewResult) -> None:
        inputs = load_fixture(d, self.settings.currency)
        personalizer = self._personalizer(d)
        try:
            context = build_context(d, self.settings, **inputs, run_key="preview", is_preview=True)
        except NoContent as skip:
            result.skip_reason = skip.reason
            return
        result.rendered = personalizer.renderer.render(context)
        self._headers(personalizer, inputs["customer"], result)
        rec = inputs.get("recommendation")
        if rec is not None:
            result.recommendations = self._lines(rec.blocks, inputs["products"])

    def _render_customer(self, d: CampaignDefinition, customer_id: int, result: PreviewResult) -> None:
        customer = self.store.customers_by_ids([customer_id]).get(customer_id)
        if customer is None:
            raise NotFoundError(f"no customer with id {customer_id}")
        result.source_label = f"customer {customer.id} (shop id {customer.external_id})"
        order = None
        if d.kind == "post_purchase":
            orders = self.store.orders_for_customers([customer.id], limit_per_customer=1)[customer.id]
            if not orders:
                result.skip_reason = "no_orders"
                return
            order = orders[0]
        personalizer = self._personalizer(d)
        result.eligibility = self._eligibility(d, customer)
        [item] = personalizer.prepare([Member(customer, order)], build_messages=False)
        if not isinstance(item, Prepared):
            result.skip_reason = item.reason
            return
        result.rendered = item.rendered
        self._headers(personalizer, customer, result)
        result.recommendations = self._customer_recommendations(d, customer.id)

    def _eligibility(self, d: CampaignDefinition, customer: CustomerRecord) -> str | None:
        share = d.holdout if d.holdout is not None else self.settings.holdout_share
        [verdict] = judge_batch(
            self.store,
            self.settings,
            [customer],
            campaign=d.name,
            now=reference_now(self.settings, self.store),
            holdout_share=share,
            marketing=d.marketing,
        )
        if verdict.status == "eligible":
            return None
        if verdict.status == "holdout":
            return "in the holdout group: a real send records them but mails nothing"
        return f"a real send would mark them {verdict.status}: {verdict.reason or verdict.status}"

    def _headers(self, personalizer: Personalizer, customer: CustomerRecord, result: PreviewResult) -> None:
        assert result.rendered is not None
        result.from_ = personalizer.from_
        to = customer if customer.email else replace(customer, email="preview@example.invalid")
        try:
            email = personalizer.build_email(to, result.rendered)
        except SenderError as exc:
            result.headers = f"(no message could be built: {exc})"
            return
        head = email.data.split(b"\r\n\r\n", 1)[0]
        result.headers = head.decode("ascii", "replace").replace("\r\n", "\n")

    def _customer_recommendations(self, d: CampaignDefinition, customer_id: int) -> list[RecommendationLine]:
        recommender = self.recommender()
        if recommender is None or d.kind not in RECOMMENDING_KINDS:
            return []
        spec = d.recommend
        recs = recommender.recommend([customer_id], blocks=spec.blocks, n=spec.count, rules=spec.rules())
        if not recs:
            return []
        ids = {i.product_id for b in recs[0].blocks for i in b.items}
        return self._lines(recs[0].blocks, self.store.products_by_ids(ids))

    @staticmethod
    def _lines(blocks: Any, products: dict[int, Any]) -> list[RecommendationLine]:
        out = []
        for block in blocks:
            for item in block.items:
                product = products.get(item.product_id)
                name = product.name if product is not None else f"product {item.product_id}"
                reason = item.reason or block.fallback
                out.append(RecommendationLine(block.name, name, reason, float(item.score)))
        return out

    # ------------------------------------------------------------------ test sends

    def send_test(self, name: str, to: str, customer_id: int | None = None) -> TestSendResult:
        """Render as :meth:`render` does and send it to ``to`` with "[TEST] " before the subject.

        Goes through the configured sender; recorded as a ``test_send`` event, never as a delivery.
        """
        from campaigns.senders import OutgoingMessage, resolve_sender

        to = to.strip()
        result = self.render(name, customer_id)
        if result.rendered is None:
            return TestSendResult(False, result.error or f"nothing to send ({result.skip_reason})")
        d = self.definition(name)
        personalizer = self._personalizer(d)
        if customer_id is None:
            customer = load_fixture(d, self.settings.currency)["customer"]
        else:
            customer = self.store.customers_by_ids([customer_id])[customer_id]
        try:
            email = personalizer.build_email(
                replace(customer, email=to), result.rendered, subject_prefix="[TEST] "
            )
        except (SenderError, ConfigError) as exc:
            return TestSendResult(False, str(exc))
        outcomes: list[Any] = []
        try:
            with resolve_sender(self.settings.resolved_sender(), self.settings) as sender:
                message = OutgoingMessage(
                    f"test-{uuid.uuid4().hex[:12]}",
                    email.mail_from,
                    email.rcpt_to,
                    email.data,
                    email.message_id,
                )
                sender.send_batch([message], outcomes.append)
        except RetainError as exc:
            outcomes = []
            detail = str(exc)
        else:
            detail = outcomes[0].detail if outcomes else "the sender reported nothing"
        ok = bool(outcomes and outcomes[0].ok)
        self.store.record_event(
            "test_send",
            customer_id=customer_id,
            campaign=d.name,
            payload={"to": email.rcpt_to, "ok": ok, "message_id": email.message_id, "detail": detail[:300]},
        )
        return TestSendResult(ok, f"sent to {email.rcpt_to}" if ok else f"not sent: {detail}")


def _sources(d: CampaignDefinition) -> list[tuple[str, str]]:
    files = [d.path, d.text_path]
    out = []
    for path in files:
        try:
            out.append((path.name, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return out
