"""The Sender protocol and the records that cross it.

A sender takes wire-ready messages (:class:`OutgoingMessage`) and reports one :class:`SendResult` per
message through a callback, in the caller's thread, as soon as that message is final. The runner owns the
ledger; a sender owns only the transport (connections, retries, rate limits).

    with resolve_sender("memory://", settings) as sender:
        sender.send_batch([OutgoingMessage("k1", "shop@x.test", "ann@y.test", raw)], results.append)

Implementations: ``smtp`` (:mod:`campaigns.senders.smtp`), ``outbox`` (Maildir of ``.eml`` files),
``console`` and ``memory``; any class with the same shape can be named by dotted path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, runtime_checkable

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


@dataclass(frozen=True, slots=True)
class SendResult:
    """The final outcome of one message.

    ``permanent`` is True when retrying cannot help (a 5xx reply; a 5xx on RCPT is a hard bounce).
    ``code`` is the SMTP reply code when there was one; ``detail`` is human text without secrets.
    """

    key: str
    ok: bool
    code: int | None = None
    detail: str = ""
    permanent: bool = False
    attempts: int = 1


@runtime_checkable
class Sender(Protocol):
    """What the runner needs from a transport.

    ``send_batch`` sends every message (concurrently as the sender sees fit) and calls ``on_result``
    exactly once per message, in the caller's thread, as soon as it is final (sent, permanently failed
    or retries exhausted). It raises :class:`campaigns.errors.SenderPausedError` after too many
    consecutive failures; messages not yet attempted then get no ``on_result`` call.
    """

    name: str

    def send_batch(self, messages: Sequence[OutgoingMessage], on_result: ResultCallback) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Sender: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class SenderBase:
    """Context-manager plumbing shared by the bundled senders (``close`` does nothing by default)."""

    name: str = "base"

    def close(self) -> None:
        """Release connections and files; safe to call twice."""

    def __enter__(self) -> SenderBase:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
