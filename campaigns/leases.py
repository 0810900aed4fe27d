"""Who holds a lease, and whether that holder is still alive: one answer for runs, batches and locks.

A holder is named ``host:pid:nonce`` (:func:`process_identity`, recomputed after a fork). On this host a
holder is provably gone when its process no longer exists (or is a zombie); a holder on another host
cannot be probed, so the caller falls back to the age of its heartbeat.

    me = process_identity()
    if holder_is_gone(row.owner, me): take_over()
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

_identity: tuple[int, str] | None = None


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
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    return host, int(pid_text) if pid_text.isdigit() else None


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


__all__ = ["holder_is_gone", "new_owner", "owner_is_dead", "pid_alive", "process_identity"]
