"""Who holds a lease, and whether that holder is still alive: one answer for runs, batches and locks.

A holder is named ``host:pid:nonce`` (:func:`process_identity`, recomputed after a fork), optionally
behind a role (``sync:host:pid:nonce``). The takeover rule (:func:`may_take_over`, docs/scheduling.md):

- on **this host** the pid decides: a holder whose process no longer exists (or is a zombie) is
  provably gone and is taken over at once; a live process is never taken over, however old its
  heartbeat (stop it first); within this very process, an attempt is alive while its keeper runs;
- a holder on **another host** cannot be probed: it is taken over only once its heartbeat is older
  than the lease. Its heartbeat runs on its own thread (:class:`LeaseKeeper`), so a process blocked
  on a silent server keeps its lease fresh.

A process that finds its lease taken (the keeper's ``lost`` event) stops before recording anything.

    me = process_identity()
    if holder_is_gone(row.owner, me): take_over()
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

log = logging.getLogger(__name__)

_identity: tuple[int, str] | None = None
#: owners whose lease a :class:`LeaseKeeper` of this process renews right now (the live attempts)
_live: set[str] = set()
_live_lock = threading.Lock()


def mark_live(owner: str, live: bool = True) -> None:
    """Declare ``owner`` (a lease holder of this process) alive, or no longer (``live=False``)."""
    with _live_lock:
        if live:
            _live.add(owner)
        else:
            _live.discard(owner)


def is_live_here(owner: str) -> bool:
    """True while a keeper of this process renews ``owner``'s lease."""
    with _live_lock:
        return owner in _live


def process_identity() -> str:
    """``host:pid:nonce`` of this process; the same value until the process forks."""
    global _identity
    pid = os.getpid()
    if _identity is None or _identity[0] != pid:
        _identity = (pid, f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:8]}")
    return _identity[1]


def new_owner() -> str:
    """A fresh ``host:pid:nonce`` for one run attempt of this process (distinct from earlier attempts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _parse(owner: str) -> tuple[str, int | None]:
    parts = owner.split(":")
    if len(parts) >= 4:  # role:host:pid:nonce
        parts = parts[1:]
    host = parts[0]
    pid_text = parts[1] if len(parts) > 1 else ""
    return host, int(pid_text) if pid_text.isdigit() else None


def on_this_host(owner: str) -> bool:
    """True when ``owner`` names a process of this host (its pid can be probed)."""
    host, pid = _parse(owner)
    return host == socket.gethostname() and pid is not None


def pid_alive(pid: int) -> bool:
    """True while a process with this id exists on this host and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped) is dead for our purpose
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` names a process on this host that no longer runs (False when unsure)."""
    host, pid = _parse(owner)
    if host != socket.gethostname() or pid is None:
        return False
    return not pid_alive(pid)


def holder_is_gone(owner: str, me: str | None = None) -> bool:
    """True when the lease holder is this process (an earlier attempt of mine) or a dead process here.

    A holder on another host cannot be probed: its lease expires with its heartbeat instead.
    """
    me = me or process_identity()
    if owner == me:
        return True
    host, pid = _parse(owner)
    if host != socket.gethostname() or pid is None:
        return False
    if pid == os.getpid():
        return True  # same process, older nonce: an earlier attempt that did not release
    return not pid_alive(pid)


def may_take_over(
    owner: str | None, heartbeat_at: datetime | None, now: datetime, lease: timedelta, me: str | None = None
) -> bool:
    """The takeover rule of the module docstring: may ``me`` take a lease held by ``owner``?

    ``heartbeat_at`` and ``now`` are naive UTC. True for no holder, for ``me`` (or an earlier attempt of
    this process), for a dead process of this host, and for another host's holder silent for ``lease``.
    """
    if not owner:
        return True
    if me is not None and owner == me:
        return True
    if on_this_host(owner):
        if _parse(owner)[1] == os.getpid():
            # another attempt of this process (a scheduler thread): alive exactly while its keeper runs
            return not is_live_here(owner)
        return not pid_alive(_parse(owner)[1] or 0)
    if me is not None and owner == me:
        return True
    return heartbeat_at is None or heartbeat_at < now - lease


class LeaseKeeper:
    """Renews a lease on its own thread every ``interval`` seconds, whatever the owner is blocked on.

    ``renew()`` returns False when the lease is no longer ours (taken over): :attr:`lost` is set and the
    keeper stops. A renewal that raises (a locked or unreachable database) is logged and retried at
    the next beat: it does not count as lost. ``renew`` must use its own database connection (the
    store's pool hands each thread its own).

        with LeaseKeeper(lambda: store.heartbeat(run_id, owner), 10) as lease:
            ...
            lease.check()  # raises LeaseLostError once another process took over
    """

    def __init__(
        self, renew: Callable[[], bool], interval: float, *, what: str = "lease", owner: str | None = None
    ) -> None:
        self.renew = renew
        self.owner = owner
        self.interval = interval
        self.what = what
        self.lost = threading.Event()
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"lease-keeper:{what}", daemon=True)

    def start(self) -> LeaseKeeper:
        if self.owner:
            mark_live(self.owner)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self.owner:
            mark_live(self.owner, False)
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=max(5.0, self.interval))

    def check(self) -> None:
        """Raise LeaseLostError when the lease was taken by another process."""
        if self.lost.is_set():
            from campaigns.errors import LeaseLostError

            raise LeaseLostError(
                f"{self.what}: another process took over this lease; stopping without recording anything"
            )

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                ok = self.renew()
            except Exception as exc:  # noqa: BLE001 - a transient database error must not end the lease
                log.warning("%s: heartbeat failed (%s); retrying in %.0f s", self.what, exc, self.interval)
                continue
            self.beats += 1
            if not ok:
                log.error("%s: lease taken over by another process", self.what)
                self.lost.set()
                return

    def __enter__(self) -> LeaseKeeper:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = [
    "LeaseKeeper",
    "holder_is_gone",
    "is_live_here",
    "mark_live",
    "may_take_over",
    "new_owner",
    "on_this_host",
    "owner_is_dead",
    "pid_alive",
    "process_identity",
]
