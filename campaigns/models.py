"""The database tables (SQLAlchemy 2.0 typed declarative).

Only :mod:`campaigns.store` and the Alembic migrations use these classes; no ORM object leaves
the store. Times are stored as naive UTC datetimes. Money is a double (the shop's currency,
``currency`` column); analytics round at the edge.

Prices may be unknown (a basket file without prices): ``order_lines.unit_price`` and ``orders.total`` are
then NULL, never a made-up number; analytics count revenue over priced orders only.

Purchases and returns are kept apart: ``orders``/``order_lines`` hold purchases only, and
``returns`` holds cancelled or returned lines, so no purchase query can mix them in by accident.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)  # the shop's own customer key
    email: Mapped[str | None] = mapped_column(String(320), index=True)
    first_name: Mapped[str | None] = mapped_column(String(200))
    last_name: Mapped[str | None] = mapped_column(String(200))
    country: Mapped[str | None] = mapped_column(String(100))
    timezone: Mapped[str | None] = mapped_column(String(64))
    marketing_consent: Mapped[bool] = mapped_column(Boolean, default=False)
    consent_source: Mapped[str | None] = mapped_column(String(64))
    consent_at: Mapped[datetime | None] = mapped_column(DateTime)
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    region: Mapped[str | None] = mapped_column(String(100))  # province/state code, for the timezone


class CustomerTag(Base):
    """A shop's tag on a customer (Shopify customers export ``Tags``); segments select on them."""

    __tablename__ = "customer_tags"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(255), primary_key=True)


class Product(Base):
    __tablename__ = "products"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sku: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(500))
    price: Mapped[float | None] = mapped_column(Float)
    currency: Mapped[str] = mapped_column(String(3))
    url: Mapped[str | None] = mapped_column(String(1000))
    image_url: Mapped[str | None] = mapped_column(String(1000))
    category: Mapped[str | None] = mapped_column(String(200), index=True)
    in_stock: Mapped[bool] = mapped_column(Boolean, default=True)
    # the catalogue (products exports); NULL/defaults for products only seen in orders
    handle: Mapped[str | None] = mapped_column(String(255))
    image_alt: Mapped[str | None] = mapped_column(String(500))
    compare_at_price: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="active", server_default="active")
    published: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    vendor: Mapped[str | None] = mapped_column(String(200))
    tags: Mapped[str | None] = mapped_column(Text)  # comma-separated, as the shop wrote them
    inventory_qty: Mapped[int | None] = mapped_column(Integer)
    catalog_source: Mapped[str | None] = mapped_column(String(32))  # shopify | woocommerce | generic
    catalog_updated_at: Mapped[datetime | None] = mapped_column(DateTime)


class ProductEvent(Base):
    """A change a catalogue re-import found: back in stock, out of stock, price drop (append-only)."""

    __tablename__ = "product_events"
    __table_args__ = (Index("ix_product_events_kind_at", "kind", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # back_in_stock | out_of_stock | price_drop
    old_value: Mapped[float | None] = mapped_column(Float)  # price_drop: the old and new price
    new_value: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Order(Base):
    """A purchase (never a return)."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    ordered_at: Mapped[datetime] = mapped_column(DateTime, index=True)
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[float | None] = mapped_column(Float)  # NULL: the file had no prices
    source: Mapped[str] = mapped_column(String(32))  # online-retail | shopify | generic
    financial_status: Mapped[str | None] = mapped_column(String(32))  # Shopify's, as exported
    discount_codes: Mapped[str | None] = mapped_column(String(500))  # comma-separated
    discount_amount: Mapped[float | None] = mapped_column(Float)
    refunded_amount: Mapped[float | None] = mapped_column(Float)


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (UniqueConstraint("order_id", "line_no"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    line_no: Mapped[int] = mapped_column(Integer)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[float | None] = mapped_column(Float)  # NULL: the file had no prices
    discount: Mapped[float | None] = mapped_column(Float)  # the line's discount (whole line)


class Return(Base):
    """A returned or cancelled line; kept apart from purchases."""

    __tablename__ = "returns"
    __table_args__ = (UniqueConstraint("external_id", "line_no"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(128))  # e.g. the cancellation invoice "C536379"
    line_no: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"))
    quantity: Mapped[int] = mapped_column(Integer)  # positive: how many came back
    unit_price: Mapped[float] = mapped_column(Float)
    returned_at: Mapped[datetime] = mapped_column(DateTime)


class Run(Base):
    """One run of a campaign; ``key`` makes a rerun resume the same run."""

    __tablename__ = "runs"
    __table_args__ = (UniqueConstraint("campaign", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign: Mapped[str] = mapped_column(String(200), index=True)
    key: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20))  # running | paused | completed | failed | skipped
    reason: Mapped[str | None] = mapped_column(Text)
    scheduled_for: Mapped[datetime | None] = mapped_column(DateTime)
    dispatcher: Mapped[str] = mapped_column(String(20), default="local")
    is_test: Mapped[bool] = mapped_column(Boolean, default=False)
    #: NULL, or the go-live checks a `send --allow-unsafe-send` overrode (migration 0003_secops)
    unsafe_send: Mapped[str | None] = mapped_column(Text)
    # the process currently sending this run (a lease renewed by heartbeat; stale leases are taken over)
    owner: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    # A/B test then winner (campaigns/abtest.py): test | waiting | winner, and the decision taken
    phase: Mapped[str | None] = mapped_column(String(20))
    decision: Mapped[dict | None] = mapped_column(JSON)  # type: ignore[type-arg]


class Delivery(Base):
    """The send ledger: one row per (run, customer); the unique constraint forbids a second send."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("run_id", "customer_id"),
        # post-purchase follow-ups: at most one per order per campaign (NULLs never collide)
        UniqueConstraint("campaign", "order_id"),
        Index("ix_deliveries_customer_sent", "customer_id", "sent_at"),
        Index("ix_deliveries_run_status", "run_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    campaign: Mapped[str] = mapped_column(String(200))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    # claimed | sending | sent | failed | deferred | skipped | holdout
    status: Mapped[str] = mapped_column(String(20))
    not_before: Mapped[datetime | None] = mapped_column(DateTime)  # deferred (quiet hours) until then
    reason: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    email: Mapped[str | None] = mapped_column(String(320))
    subject: Mapped[str | None] = mapped_column(String(1000))
    message_id: Mapped[str | None] = mapped_column(String(300))
    sender: Mapped[str | None] = mapped_column(String(50))
    variant: Mapped[str | None] = mapped_column(String(40))  # the A/B variant sent (None: no variants)
    is_marketing: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)


class RunBatch(Base):
    """One batch of a run handed to a Celery worker: the members, and a lease while a worker sends it.

    ``queued -> running -> done``; a worker takes the batch by a conditional UPDATE (its lease), so a
    redelivered message never has two workers on one batch; the run closes when no batch is open.
    """

    __tablename__ = "run_batches"
    __table_args__ = (
        UniqueConstraint("run_id", "batch_no"),
        Index("ix_run_batches_run_status", "run_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id"))
    batch_no: Mapped[int] = mapped_column(Integer)
    members: Mapped[list[list[int | None]]] = mapped_column(JSON)  # [[customer_id, order_id or null], ...]
    size: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))  # queued | running | done
    owner: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    enqueued_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class Suppression(Base):
    """Addresses that must never be mailed again (unsubscribed, hard bounce, complaint, manual)."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # lower-cased
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), index=True)
    reason: Mapped[str] = mapped_column(String(32))
    campaign: Mapped[str | None] = mapped_column(String(200))
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Event(Base):
    """An append-only log of what happened (unsubscribe, feedback, test send, scheduler skip ...)."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(50), index=True)
    customer_id: Mapped[int | None] = mapped_column(Integer, index=True)
    campaign: Mapped[str | None] = mapped_column(String(200))
    payload: Mapped[dict | None] = mapped_column(JSON)  # type: ignore[type-arg]
    created_at: Mapped[datetime] = mapped_column(DateTime)


class Feedback(Base):
    """A star rating for one order, from a follow-up email; replays overwrite the same row."""

    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("order_id", "campaign"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    campaign: Mapped[str] = mapped_column(String(200))
    rating: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class SchedulerLock(Base):
    """The single-scheduler lock row (SQLite; PostgreSQL uses an advisory lock instead)."""

    __tablename__ = "scheduler_locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    acquired_at: Mapped[datetime] = mapped_column(DateTime)
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime)


class Click(Base):
    """A request on a tracked link (``/c/<token>``), human or not; ``reason`` says why it is not.

    ``reason`` is NULL for a human click, else ``scanner user agent``, ``too soon after delivery``,
    ``many links at once`` (campaigns/clicks.py). HEAD requests are never stored.
    """

    __tablename__ = "clicks"
    __table_args__ = (
        Index("ix_clicks_campaign_customer", "campaign", "customer_id"),
        Index("ix_clicks_run_customer_at", "run_key", "customer_id", "clicked_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign: Mapped[str] = mapped_column(String(200))
    run_key: Mapped[str] = mapped_column(String(200))
    customer_id: Mapped[int] = mapped_column(Integer)
    variant: Mapped[str | None] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(Text)
    user_agent: Mapped[str | None] = mapped_column(String(300))
    reason: Mapped[str | None] = mapped_column(String(40))
    clicked_at: Mapped[datetime] = mapped_column(DateTime)


class CouponCode(Base):
    """A unique coupon code: imported into a campaign's pool, or generated; assigned once per (run, customer)."""

    __tablename__ = "coupon_codes"
    __table_args__ = (
        UniqueConstraint("code"),
        UniqueConstraint("campaign", "run_key", "customer_id"),
        Index("ix_coupon_codes_campaign_free", "campaign", "customer_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    campaign: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # pool | generated
    run_key: Mapped[str | None] = mapped_column(String(200))
    customer_id: Mapped[int | None] = mapped_column(Integer)
    variant: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    assigned_at: Mapped[datetime | None] = mapped_column(DateTime)


class CustomerPrediction(Base):
    """Lifecycle predictions per customer, written by ``retain predict`` / ``retain train``
    (docs/predictions.md). One row per customer; a new prediction run replaces them all."""

    __tablename__ = "customer_predictions"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    as_of: Mapped[datetime] = mapped_column(DateTime)  # the "now" the predictions are for
    p_alive: Mapped[float] = mapped_column(Float, index=True)
    expected_orders_30d: Mapped[float] = mapped_column(Float)
    expected_orders_90d: Mapped[float] = mapped_column(Float, index=True)
    expected_orders_90d_low: Mapped[float | None] = mapped_column(Float)  # 80% interval (parameter
    expected_orders_90d_high: Mapped[float | None] = mapped_column(Float)  # uncertainty, bootstrap)
    next_order_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)
    spend_per_order: Mapped[float | None] = mapped_column(Float)  # NULL: the shop has no prices
    clv_12m: Mapped[float | None] = mapped_column(Float, index=True)
    clv_12m_low: Mapped[float | None] = mapped_column(Float)
    clv_12m_high: Mapped[float | None] = mapped_column(Float)
    preferred_hour: Mapped[int | None] = mapped_column(Integer)  # 0-23, customer-local
    preferred_weekday: Mapped[int | None] = mapped_column(Integer)  # 0 = Monday


class PredictionFit(Base):
    """One prediction run: the fitted parameters, how many customers, and the stated uncertainty."""

    __tablename__ = "prediction_fits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    as_of: Mapped[datetime] = mapped_column(DateTime)
    customers: Mapped[int] = mapped_column(Integer)
    details: Mapped[dict[str, object]] = mapped_column(JSON)
