"""Outbox sender: one ``.eml`` file per message in a Maildir (``tmp/``, ``new/``, ``cur/``) — the demo default.

Each message is written to ``tmp/`` and renamed into ``new/``, so a reader (a mail client pointed at the
Maildir, or ``mailbox.Maildir``) never sees half a file, and a crash leaves at most a stray file in
``tmp/``. The file name comes from the delivery key (only ``A-Z a-z 0-9 . _ -`` kept, plus a short hash so
different keys never collide): ``new/<key>.eml``. A second send of the same key does not overwrite the
first but lands beside it as ``<key>.2.eml`` etc., so duplicates stay visible. Line endings are written as
LF, as Maildir expects.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path

from campaigns.errors import ConfigError
from campaigns.senders.base import OutgoingMessage, ResultCallback, Sender, SenderBase, SendResult, SendStatus

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_stem(key: str) -> str:
    """A file-name-safe, collision-free stem for a delivery key (at most ~90 characters)."""
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:10]
    readable = _UNSAFE.sub("_", key).strip("._")[:72] or "message"
    return f"{readable}-{digest}"


class OutboxSender(SenderBase):
    """Writes messages into the Maildir at ``directory`` (created if missing).

    ``fsync=True`` flushes each file to disk before reporting it sent (slower; survives power loss,
    not just a killed process).
    """

    name = "outbox"

    def __init__(self, directory: str | os.PathLike[str], fsync: bool = False) -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        try:
            for sub in ("tmp", "new", "cur"):
                (self.directory / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"outbox directory {self.directory}: cannot create it ({exc.strerror})"
            ) from None
        self._pid = os.getpid()

    def __repr__(self) -> str:
        return f"OutboxSender({str(self.directory)!r})"

    def path_for(self, key: str) -> Path:
        """Where the first copy of the message with delivery key ``key`` lands."""
        return self.directory / "new" / f"{safe_file_stem(key)}.eml"

    def send_batch(self, messages: Sequence[OutgoingMessage], on_result: ResultCallback) -> None:
        """Write each message (tmp/ then rename into new/) and call ``on_result`` once per message."""
        for message in messages:
            try:
                target = self._write(message)
            except OSError as exc:
                # a full disk or a permission problem is not the recipient's fault: a later run retries
                detail = f"cannot write to {self.directory}: {exc.strerror}"
                on_result(SendResult(message.key, SendStatus.DEFERRED, detail))
                continue
            on_result(SendResult(message.key, SendStatus.SENT, str(target)))

    def _write(self, message: OutgoingMessage) -> Path:
        stem = safe_file_stem(message.key)
        tmp = self.directory / "tmp" / f"{stem}.{self._pid}.eml"
        data = message.data.replace(b"\r\n", b"\n")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            target = self.directory / "new" / f"{stem}.eml"
            copy = 1
            while target.exists() or (self.directory / "cur" / target.name).exists():
                copy += 1
                target = self.directory / "new" / f"{stem}.{copy}.eml"
            os.replace(tmp, target)
        except BaseException:
            # a full disk or a refused rename leaves no half-written file behind in tmp/
            tmp.unlink(missing_ok=True)
            raise
        return target


_: type[Sender] = OutboxSender  # mypy checks that the class satisfies the Sender protocol
