"""What the preview shows, without HTTP: campaign list, one rendered email, test sends.

:class:`PreviewService` renders through the same :class:`~campaigns.factory.EmailFactory` the
runner uses (real recommendations, real context, real MIME headers), with the templates run in the
one sandboxed renderer every path uses (:mod:`campaigns.sandbox`). It never writes a delivery: a test
send is recorded as an event of kind ``test_send``.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from campaigns.checks import CheckResult, EmailChecker, EmailReport, static_checks
from campaigns.clock import reference_now
from campaigns.config import Settings
from campaigns.definition import CampaignDefinition, campaign_paths, find_campaign, load_campaign
from campaigns.eligibility import judge_batch
from campaigns.errors import ConfigError, NotFoundError, RetainError, SenderError
from campaigns.factory import BuildOptions, EmailFactory, Prepared, Recommends
from campaigns.kinds import AudienceRequest, ContextInputs, Member, ModelUse
from campaigns.kinds.fixture import fixture_member, load_fixture
from campaigns.lifecycle.words import prediction_lines
from campaigns.render import CampaignRenderer, RenderedEmail
from campaigns.segments import (
    count_segment,
    load_segments,
    resolve_segment,
    sample_segment,
)
from campaigns.store.records import CustomerRecord
from campaigns.tokens import sign_as_test

#: seconds a segment size stays cached (counting a segment scans the orders)
SEGMENT_CACHE_SECONDS = 60.0
#: segment members judged for the eligible-recipients figure (the first ones by customer id)
ELIGIBILITY_SAMPLE = 500
#: tool-backed check reports kept (by campaign and HTML)
CHECK_CACHE_SIZE = 64


@dataclass(frozen=True)
class Audience:
    """Who a campaign would mail now: ``eligible`` of ``size`` (exact when all were judged, else estimated
    from the first ``judged``), and why the others would not be mailed."""

    size: int
    eligible: int
    judged: int
    reasons: dict[str, int]
    #: "in the segment", or for a kind with its own audience (follow-ups, catalogue news) "due now"
    of: str = "in the segment"

    @property
    def exact(self) -> bool:
        return self.judged >= self.size

    def describe(self) -> str:
        why = ", ".join(
            f"{r.replace('_', ' ')} {n}" for r, n in sorted(self.reasons.items(), key=lambda x: -x[1])
        )
        basis = "all judged" if self.exact else f"estimated from the first {self.judged:,}"
        who = "segment members" if self.of == "in the segment" else "customers due now"
        return f"{self.eligible:,} of {self.size:,} {who} would be mailed now ({basis})" + (
            f"; not mailed: {why}" if why else ""
        )


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
    due_based: bool = False  # the kind's audience is what is due (orders), not a segment
    audience: Audience | None = None  # eligible recipients now (None: unknown or due-based)


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
    uses_model: bool = False  # the kind asks the recommender (a missing model changes the email)
    rendered: RenderedEmail | None = None
    from_: str = ""
    headers: str = ""
    checks: list[CheckResult] = field(default_factory=list)  # size, links, images (the rest: checks())
    html_bytes: int = 0
    recommendations: list[RecommendationLine] = field(default_factory=list)
    eligibility: str | None = None
    skip_reason: str | None = None
    error: str | None = None
    sources: list[tuple[str, str]] = field(default_factory=list)  # (file name, text)
    predictions: list[tuple[str, str]] = field(default_factory=list)  # lifecycle predictions in words

    @property
    def sender_name(self) -> str:
        """The From display name as an inbox row shows it (the address when there is no name)."""
        name, address = parseaddr(self.from_)
        return name or address


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
        recommender: Recommends | None = None,
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
        self._audiences: dict[str, tuple[float, Audience | None]] = {}
        self._lint_cache: dict[str, tuple[float, list[str]]] = {}
        self._check_cache: dict[str, EmailReport] = {}

    # ------------------------------------------------------------------ recommender

    def recommender(self) -> Recommends | None:
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
            due = d.kind_plugin.ticks_without_schedule
            audience = self._audience(d)
            size = audience.size if audience is not None else None
            schedule = d.schedule.describe() if d.schedule else "manual"
            out.append(
                CampaignSummary(
                    d.name, d.kind, segment, size, schedule, d.marketing, problems, path.name, due, audience
                )
            )
        return out

    def _audience(self, d: CampaignDefinition) -> Audience | None:
        """Eligible recipients now: the campaign's audience — the kind's own (those due now, buyers of
        products with news) or its segment — of which the first ELIGIBILITY_SAMPLE are judged as a send
        would (address, suppression, consent, frequency cap, holdout; quiet hours only defer), scaled to
        the audience's size. None when it cannot be worked out (e.g. an unknown segment)."""
        key = f"{d.name}:{d.segment_rules or d.segment}"
        cached = self._audiences.get(key)
        if cached and time.monotonic() - cached[0] < SEGMENT_CACHE_SECONDS:
            return cached[1]
        audience: Audience | None = None
        try:
            now = reference_now(self.settings, self.store)
            own = d.kind_plugin.audience(
                AudienceRequest(self.store, self.settings, d, now, self.segments_file)
            )
            of, size, members = "in the segment", 0, list[Member]()
            if own is not None:
                of = "due now"
                for batch in own:
                    size += len(batch)
                    members += batch[: ELIGIBILITY_SAMPLE - len(members)]
            else:
                size = self._segment_size(d) or 0
                segment = resolve_segment(d.segment_rules or d.segment, load_segments(self.segments_file))
                members = [
                    Member(m.customer)
                    for m in sample_segment(self.store, segment, now=now, limit=ELIGIBILITY_SAMPLE)
                ]
            share = d.holdout if d.holdout is not None else self.settings.holdout_share
            verdicts = judge_batch(
                self.store,
                self.settings,
                [m.customer for m in members],
                campaign=d.name,
                now=now,
                holdout_share=share,
                marketing=d.marketing,
            )
        except RetainError:
            pass
        else:
            mailed = sum(1 for v in verdicts if v.status in ("eligible", "deferred"))
            reasons = Counter(
                v.reason or v.status for v in verdicts if v.status not in ("eligible", "deferred")
            )
            judged = len(verdicts)
            scale = 1.0 if judged >= size or judged == 0 else size / judged
            audience = Audience(
                size, round(mailed * scale), judged, {r: round(n * scale) for r, n in reasons.items()}, of
            )
        self._audiences[key] = (time.monotonic(), audience)
        return audience

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
        """A random recipient: the kind's own candidates (recent buyers for follow-ups), or a member of
        the campaign's segment (among its first 500)."""
        d = self.definition(name)
        now = reference_now(self.settings, self.store)
        request = AudienceRequest(self.store, self.settings, d, now, self.segments_file)
        own = d.kind_plugin.preview_members(request, 50)
        if own is not None:
            if not own:
                raise NotFoundError(f"{d.name}: nobody is due for this kind of campaign right now")
            return random.choice(own).customer
        segment = resolve_segment(d.segment_rules or d.segment, load_segments(self.segments_file))
        members = sample_segment(self.store, segment, now=now, limit=500)
        if not members:
            raise NotFoundError(f"segment {segment.name!r} is empty right now")
        return random.choice(members).customer

    # ------------------------------------------------------------------ rendering

    def _factory(self, d: CampaignDefinition, **options: Any) -> EmailFactory:
        return EmailFactory(
            self.settings,
            d,
            catalogue=self.store,
            recommender=self.recommender() if d.kind_plugin.needs.model is not ModelUse.NONE else None,
            options=BuildOptions(**{"run_key": "preview", "preview": True, "messages": False, **options}),
            # one recipient per page: the compiled-shape cache buys nothing here
            renderer=CampaignRenderer(d, self.settings, compile=False),
        )

    def render(self, name: str, customer_id: int | None = None) -> PreviewResult:
        """The campaign rendered for ``customer_id`` (None: the preview fixture). Errors become ``error``."""
        try:
            d = self.definition(name)
        except RetainError as exc:
            return PreviewResult(name, "?", "", customer_id, error=str(exc))
        uses_model = d.kind_plugin.needs.model is ModelUse.REQUIRED
        result = PreviewResult(
            d.name, d.kind, "preview fixture", customer_id, uses_model, sources=_sources(d)
        )
        try:
            with sign_as_test():  # a link clicked in the preview must not unsubscribe the customer
                self._render(d, customer_id, result)
        except RetainError as exc:
            result.error = str(exc)
        if result.rendered is not None:
            result.html_bytes = len(result.rendered.html.encode("utf-8"))
        return result

    def checks(self, name: str, customer_id: int | None = None) -> EmailReport | str:
        """Every check of the email as it would be sent (no preview banner, the wire message): the
        static ones and, when their tools are installed, Can I Email, axe-core, the layout and
        SpamAssassin. Cached by the email's HTML. A string says why there is nothing to check."""
        try:
            d = self.definition(name)
            member, inputs = self._member(d, customer_id)
            if not member.customer.email:
                from dataclasses import replace

                member = replace(member, customer=replace(member.customer, email="preview@example.invalid"))
                if inputs is not None:
                    inputs = replace(inputs, customer=member.customer)
            factory = self._factory(d, preview=False, messages=True, refuse_oversized=False)
            with sign_as_test():
                item = (
                    factory.prepare_inputs(member, inputs)
                    if inputs is not None
                    else factory.prepare([member])[0]
                )
        except RetainError as exc:
            return str(exc)
        if not isinstance(item, Prepared):
            return f"nothing to check: this customer would be skipped ({item.reason})"
        key = hashlib.sha256(f"{d.name}\0{item.rendered.subject}\0{item.rendered.html}".encode()).hexdigest()
        report = self._check_cache.get(key)
        if report is None:
            source = "preview fixture" if customer_id is None else f"customer {member.customer.id}"
            with EmailChecker(self.settings) as checker:
                report = checker.check(item, source=source, name=d.name)
            with self._lock:
                if len(self._check_cache) >= CHECK_CACHE_SIZE:
                    self._check_cache.pop(next(iter(self._check_cache)))
                self._check_cache[key] = report
        return report

    def _member(self, d: CampaignDefinition, customer_id: int | None) -> tuple[Member, ContextInputs | None]:
        """The previewed recipient: the fixture's (with its inputs) or a real customer (inputs from the store)."""
        if customer_id is None:
            inputs = load_fixture(d, self.settings.currency)
            return fixture_member(inputs), inputs
        customer = self.store.customers_by_ids([customer_id]).get(customer_id)
        if customer is None:
            raise NotFoundError(f"no customer with id {customer_id}")
        order = None
        if d.kind_plugin.needs.similar_to_order:
            orders = self.store.orders_for_customers([customer.id], limit_per_customer=1)[customer.id]
            order = orders[0] if orders else None
        return Member(customer, order), None

    def _render(self, d: CampaignDefinition, customer_id: int | None, result: PreviewResult) -> None:
        member, inputs = self._member(d, customer_id)
        customer = member.customer
        if customer_id is not None:
            result.source_label = f"customer {customer.id} (shop id {customer.external_id})"
            result.eligibility = self._eligibility(d, customer)
            stored = self.store.predictions_for([customer.id]).get(customer.id)
            if stored is not None:
                result.predictions = prediction_lines(stored, self.settings.currency)
        factory = self._factory(d)
        item = factory.prepare_inputs(member, inputs) if inputs is not None else factory.prepare([member])[0]
        if not isinstance(item, Prepared):
            result.skip_reason = item.reason
            return
        result.rendered = item.rendered
        result.checks = static_checks(item.rendered.html, self.settings, str(item.context["unsubscribe_url"]))
        result.from_ = factory.from_
        to = customer.email or "preview@example.invalid"
        try:
            email = factory.message(customer, item.rendered, item.context, to_email=to)
        except SenderError as exc:
            result.headers = f"(no message could be built: {exc})"
        else:
            head = email.data.split(b"\r\n\r\n", 1)[0]
            result.headers = head.decode("ascii", "replace").replace("\r\n", "\n")
        if item.inputs.recommendation is not None:
            result.recommendations = self._lines(item.inputs.recommendation.blocks, item.inputs.products)

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

    @staticmethod
    def _lines(blocks: Any, products: Any) -> list[RecommendationLine]:
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
        """Build the email as :meth:`render` does, with "[TEST] " before the subject, and send it to ``to``.

        Goes through the configured sender; recorded as a ``test_send`` event, never as a delivery. Its
        links carry test tokens (campaigns.tokens.sign_as_test): the public endpoints never act on them.
        """
        from campaigns.senders import OutgoingMessage, resolve_sender

        to = to.strip()
        try:
            d = self.definition(name)
            member, inputs = self._member(d, customer_id)
            factory = self._factory(d, subject_prefix="[TEST] ")
            with sign_as_test():  # its unsubscribe and star links answer "this was a test", act on nothing
                item = (
                    factory.prepare_inputs(member, inputs)
                    if inputs is not None
                    else factory.prepare([member])[0]
                )
            if not isinstance(item, Prepared):
                return TestSendResult(False, f"nothing to send ({item.reason})")
            email = factory.message(member.customer, item.rendered, item.context, to_email=to)
        except (SenderError, ConfigError) as exc:
            return TestSendResult(False, str(exc))
        except RetainError as exc:
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
