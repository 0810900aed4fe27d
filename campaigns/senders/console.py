"""Console sender: prints each message (envelope, then the raw message) to a stream; for trying things out."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from campaigns.senders.base import OutgoingMessage, ResultCallback, Sender, SenderBase, SendResult, SendStatus

SEPARATOR = "-" * 78


class ConsoleSender(SenderBase):
    """Writes every message to ``stream`` (default: standard output) and reports success.

    ``headers_only`` prints the header block only (the body of a rendered email is long).
    """

    name = "console"

    def __init__(self, stream: TextIO | None = None, headers_only: bool = False) -> None:
        self.stream = stream
        self.headers_only = headers_only

    def send_batch(self, messages: Sequence[OutgoingMessage], on_result: ResultCallback) -> None:
        """Print each message, flush, then call ``on_result`` for it."""
        out = self.stream or sys.stdout
        for message in messages:
            text = message.data.decode("utf-8", errors="replace").replace("\r\n", "\n")
            if self.headers_only:
                text = text.split("\n\n", 1)[0] + "\n"
            out.write(f"{SEPARATOR}\nMAIL FROM:<{message.mail_from}> RCPT TO:<{message.rcpt_to}>\n{text}")
            if not text.endswith("\n"):
                out.write("\n")
            out.flush()
            on_result(SendResult(message.key, SendStatus.SENT, "printed"))


_: type[Sender] = ConsoleSender  # mypy checks that the class satisfies the Sender protocol
