"""The Sender protocol and the records that cross it.

A sender takes wire-ready messages (:class:`OutgoingMessage`) and reports one :class:`SendResult` per
message through a callback, in the caller's thread, as soon as that message is final. The runner owns the
ledger; a sender owns only the transport (connections, retries, rate limits).

    with resolve_sender("memory://", settings) as sender:
        sender.send_batch([OutgoingMessage("k1", "shop@x.test", "ann@y.test", raw)], results.append)

A result speaks no transport's language: its :class:`SendStatus` says what the runner must do (record a
send, retry in a later run, record a final failure, suppress the address); the transport's own reply
is kept in ``code`` (``"smtp_550"``, ``"http_422"``) and ``detail``.

Implementations: ``smtp`` (:mod:`campaigns.senders.smtp`, built on the shared delivery policy in
:mod:`campaigns.senders.policy`), ``outbox`` (Maildir of ``.eml`` files), ``console`` and ``memory``;
any class with the same shape can be named by dotted path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

ResultCallback = Callable[["SendResult"], None]


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One message for one recipient.

    ``key`` is the ledger's delivery key, echoed back in the :class:`SendResult`. ``data`` is the
    RFC 5322 message (CRLF or LF line endings; senders normalise as their transport needs).
    """

    key: str
    mail_from: str
    rcpt_to: str
    data: bytes
    message_id: str | None = None


class SendStatus(StrEnum):
    """What became of one message, in any transport's words."""

    SENT = "sent"  # accepted by the transport
    DEFERRED = "deferred"  # temporary failure after the sender's retries: retry in a later pass
    REJECTED = "rejected"  # final failure; the address may be fine (5xx on DATA, refused sender)
    HARD_BOUNCE = "hard_bounce"  # final: the address is bad (the runner suppresses it)
    COMPLAINT = "complaint"  # final: the recipient complained (suppressed)
    UNKNOWN = "unknown"  # may or may not have been delivered (e.g. DATA sent, no final reply)


@dataclass(frozen=True, slots=True)
class SendResult:
    """The outcome of one message: a transport-neutral ``status`` plus the transport's own detail.

    ``code`` is the transport's short code (``smtp_550``, ``http_422``) when there was one; ``detail`` is
    human text without secrets.
    """

    key: str
    status: SendStatus
    detail: str = ""
    code: str | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        """The transport accepted the message."""
        return self.status is SendStatus.SENT

    @property
    def final(self) -> bool:
        """False for a temporary failure the next pass of the run may retry."""
        return self.status is not SendStatus.DEFERRED


@runtime_checkable
class Sender(Protocol):
    """What the runner needs from a transport.

    ``send_batch`` sends every message (concurrently as the sender sees fit) and calls ``on_result``
    exactly once per message, in the caller's thread, as soon as its outcome is known (sent, failed for
    good, or still failing when the retries ran out: DEFERRED). It raises
    :class:`campaigns.errors.SenderPausedError` after too many consecutive failures; messages not yet
    attempted then get no ``on_result`` call.
    """

    name: str

    def send_batch(self, messages: Sequence[OutgoingMessage], on_result: ResultCallback) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class SenderBase:
    """Context-manager plumbing shared by the bundled senders (``close`` does nothing by default)."""

    name: str = "base"

    def close(self) -> None:
        """Release connections and files; safe to call twice."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
