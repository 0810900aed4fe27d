"""Memory sender: keeps every message in a list, like Django's locmem backend (for tests).

Every ``memory://`` sender in a process with the same mailbox name shares one list, so a test can
resolve the sender the way the application does and still look at what was sent::

    from campaigns.senders import memory
    memory.clear()                       # empty every mailbox
    ...run the code under test with sender "memory://"...
    assert [m.rcpt_to for m in memory.outbox()] == ["ann@example.test"]

``memory://NAME`` uses the mailbox ``NAME`` (default ``"default"``). ``bounce`` lists recipient addresses
answered with a hard bounce (as an SMTP server's 550 would be), for tests of the runner's error paths.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from campaigns.senders.base import OutgoingMessage, ResultCallback, Sender, SenderBase, SendResult, SendStatus

#: every mailbox in this process, by name
MAILBOXES: dict[str, list[OutgoingMessage]] = {}
_LOCK = threading.Lock()


def outbox(name: str = "default") -> list[OutgoingMessage]:
    """The shared list of messages sent to mailbox ``name`` (created empty if needed)."""
    with _LOCK:
        return MAILBOXES.setdefault(name, [])


def clear() -> None:
    """Empty every mailbox (the lists are emptied in place, so held references see it)."""
    with _LOCK:
        for box in MAILBOXES.values():
            box.clear()


class MemorySender(SenderBase):
    """Appends each message to ``self.outbox`` (the shared mailbox ``mailbox``) and reports success.

    ``bounce`` is a set of recipient addresses answered HARD_BOUNCE (code ``smtp_550``), for tests.
    """

    name = "memory"

    def __init__(self, mailbox: str = "default", bounce: Sequence[str] = ()) -> None:
        self.mailbox = mailbox
        self.outbox: list[OutgoingMessage] = outbox(mailbox)
        self.bounce = frozenset(a.lower() for a in bounce)

    def __repr__(self) -> str:
        return f"MemorySender(mailbox={self.mailbox!r}, messages={len(self.outbox)})"

    def send_batch(self, messages: Sequence[OutgoingMessage], on_result: ResultCallback) -> None:
        """Record every message and call ``on_result`` once per message, in order."""
        for message in messages:
            if message.rcpt_to.lower() in self.bounce:
                on_result(
                    SendResult(
                        message.key, SendStatus.HARD_BOUNCE, "RCPT TO: 550 no such user (memory)", "smtp_550"
                    )
                )
                continue
            with _LOCK:
                self.outbox.append(message)
            on_result(SendResult(message.key, SendStatus.SENT, code="smtp_250"))  # as SMTP would


_: type[Sender] = MemorySender  # mypy checks that the class satisfies the Sender protocol
