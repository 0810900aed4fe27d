"""The shop's signing keys: created atomically, never empty or short, rotated without breaking links.

Files under ``var_dir``::

    secret.key            the current signing key (one line, base64url, mode 0600)
    secret.old-keys.json  rotated-out keys that still verify links until their ``keep_until`` (mode 0600)
    secret.backup.json    the fingerprint of the key set last saved by ``retain secret backup`` (doctor reads it)

Creation writes a temporary file in the same directory (mode 0600), fsyncs it, then ``os.link``\\ s it
to ``secret.key``: the link is atomic and never replaces an existing file, so of two processes starting
on a fresh var dir one wins and the other reads the winner's complete key — nobody can read a
half-written or empty key (tests/test_keys.py::test_concurrent_first_start_processes). Rotation (an
intentional replacement) writes the old-keys file first, then renames a new key file over
``secret.key``.

A key set by ``secret_key`` (environment or retain.toml) is used as is, but must be at least
:data:`MIN_KEY_LENGTH` characters for ``serve``, ``send`` and ``render`` to start (:func:`check_key`).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from campaigns.errors import ConfigError

if TYPE_CHECKING:
    from campaigns.config import Settings

KEY_FILE = "secret.key"
OLD_KEYS_FILE = "secret.old-keys.json"
BACKUP_MARK_FILE = "secret.backup.json"
#: shortest acceptable key (characters); a generated key is 43 (32 random bytes, base64url)
MIN_KEY_LENGTH = 32


@dataclass(frozen=True)
class OldKey:
    key: str
    retired_at: datetime
    keep_until: datetime


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_temp(directory: Path, text: str, prefix: str) -> Path:
    """``text`` in a new 0600 file in ``directory``, flushed to disk; returns its path."""
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return Path(name)


def _replace_atomically(path: Path, text: str) -> None:
    tmp = _write_temp(path.parent, text, f".{path.name}.")
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def new_key() -> str:
    return secrets.token_urlsafe(32)


def _bad_file(path: Path, what: str) -> ConfigError:
    return ConfigError(
        f"{path}: the secret key file {what}. Restore it from your backup (`retain secret backup` made one), "
        f"or — if you never sent mail with it — delete the file and Retain will generate a new key "
        f"(links in mail already sent would stop working)"
    )


def read_key_file(path: Path) -> str:
    """The key in ``path``; ConfigError when it is empty, short or not a key."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except UnicodeDecodeError:
        raise _bad_file(path, "is not text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the secret key file ({exc.strerror})") from None
    if not text:
        raise _bad_file(path, "is empty")
    if len(text) < MIN_KEY_LENGTH or any(c.isspace() for c in text):
        raise _bad_file(path, f"does not hold a valid key (at least {MIN_KEY_LENGTH} characters, one line)")
    return text


def ensure_key_file(var_dir: str | Path) -> str:
    """The key in ``<var_dir>/secret.key``, created atomically first when the file does not exist."""
    directory = Path(var_dir)
    path = directory / KEY_FILE
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        tmp = _write_temp(directory, new_key() + "\n", f".{KEY_FILE}.")
        try:
            os.link(tmp, path)  # atomic, and never replaces a key another process created first
            _fsync_dir(directory)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
    return read_key_file(path)


def signing_key(settings: Settings) -> bytes:
    """The key new links are signed with: ``secret_key`` when set, else the var dir's key file."""
    if settings.secret_key:
        return settings.secret_key.encode()
    return ensure_key_file(settings.var_dir).encode()


def old_keys(var_dir: str | Path) -> list[OldKey]:
    path = Path(var_dir) / OLD_KEYS_FILE
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [
            OldKey(
                str(d["key"]),
                datetime.fromisoformat(d["retired_at"]),
                datetime.fromisoformat(d["keep_until"]),
            )
            for d in data
        ]
    except (ValueError, KeyError, TypeError):
        raise ConfigError(
            f"{path}: not a valid list of rotated keys; restore it from your backup or delete it "
            f"(links signed with rotated keys would stop working)"
        ) from None


def verification_keys(settings: Settings, now: datetime | None = None) -> tuple[bytes, ...]:
    """Every key a link may be signed with: the current one first, then rotated keys still kept."""
    when = now or _now()
    keys = [signing_key(settings)]
    keys += [k.key.encode() for k in old_keys(settings.var_dir) if k.keep_until > when and len(k.key)]
    return tuple(keys)


class LiveKeys(Sequence[bytes]):
    """:func:`verification_keys` that follow a rotation without a restart (``retain serve`` holds one):
    re-read when ``secret.key`` or the old-keys file changes, and at least every :attr:`REFRESH` seconds
    (so a kept key stops verifying when its period ends)."""

    REFRESH = 60.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stamp: tuple[Any, ...] | None = None
        self._keys: tuple[bytes, ...] = ()
        self._current()

    def _files_stamp(self) -> tuple[Any, ...]:
        out: list[Any] = [int(time.monotonic() // self.REFRESH)]
        for name in (KEY_FILE, OLD_KEYS_FILE):
            try:
                st = (Path(self.settings.var_dir) / name).stat()
                out.append((st.st_mtime_ns, st.st_ino, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def _current(self) -> tuple[bytes, ...]:
        stamp = self._files_stamp()
        if stamp != self._stamp:
            self._keys = verification_keys(self.settings)
            self._stamp = stamp
        return self._keys

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def __getitem__(self, index: Any) -> Any:
        return self._current()[index]


def check_key(settings: Settings) -> None:
    """Raise ConfigError, saying what to do, unless the signing key is present and long enough.

    Called by ``serve``, ``send`` and ``render`` before they start (a missing key file is created)."""
    if settings.secret_key:
        if len(settings.secret_key.strip()) < MIN_KEY_LENGTH:
            raise ConfigError(
                f"setting 'secret_key' is too short (at least {MIN_KEY_LENGTH} characters); set a long random "
                f"value (python -c 'import secrets; print(secrets.token_urlsafe(32))'), or unset it to use "
                f"the generated {Path(settings.var_dir) / KEY_FILE}"
            )
        return
    ensure_key_file(settings.var_dir)
    old_keys(settings.var_dir)


def rotate(settings: Settings, keep_days: int, now: datetime | None = None) -> tuple[str, list[OldKey]]:
    """Make a new signing key; the old one keeps verifying links for ``keep_days``. Returns the new
    key's fingerprint and the rotated keys still kept (expired ones are dropped)."""
    if settings.secret_key:
        raise ConfigError(
            "setting 'secret_key' is set (environment or retain.toml): Retain cannot rotate a key it does not "
            "own; unset it to use the generated key file, or change it yourself (links signed with the old "
            "value stop working)"
        )
    if keep_days < 0:
        raise ConfigError("--keep-days must be 0 or more")
    when = now or _now()
    directory = Path(settings.var_dir)
    current = ensure_key_file(directory)
    kept = [k for k in old_keys(directory) if k.keep_until > when]
    kept.insert(0, OldKey(current, when, when + timedelta(days=keep_days)))
    payload = [
        {"key": k.key, "retired_at": k.retired_at.isoformat(), "keep_until": k.keep_until.isoformat()}
        for k in kept
    ]
    _replace_atomically(directory / OLD_KEYS_FILE, json.dumps(payload, indent=1) + "\n")
    fresh = new_key()
    _replace_atomically(directory / KEY_FILE, fresh + "\n")
    return fingerprint([fresh]), kept


def fingerprint(keys: list[str]) -> str:
    """A short hash naming a key set (never the keys)."""
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]


def _key_set(settings: Settings) -> list[str]:
    return [signing_key(settings).decode()] + [k.key for k in old_keys(settings.var_dir)]


def backup(settings: Settings, destination: Path) -> str:
    """Copy the signing key and the rotated keys to ``destination`` (a new 0600 JSON file) and remember
    the key set's fingerprint so ``retain doctor`` can tell the backup is current."""
    if destination.exists():
        raise ConfigError(f"{destination} exists: choose a new file for the backup")
    keys = _key_set(settings)
    data = {"secret_key": keys[0], "old_keys": keys[1:], "fingerprint": fingerprint(keys)}
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    mark = {"fingerprint": fingerprint(keys), "saved_at": _now().isoformat(timespec="seconds")}
    Path(settings.var_dir).mkdir(parents=True, exist_ok=True)
    _replace_atomically(Path(settings.var_dir) / BACKUP_MARK_FILE, json.dumps(mark) + "\n")
    return str(mark["fingerprint"])


def backed_up(settings: Settings) -> bool:
    """True when ``retain secret backup`` saved the current key set (rotating needs a new backup)."""
    if settings.secret_key:
        return True  # the key lives in the operator's own configuration
    path = Path(settings.var_dir) / BACKUP_MARK_FILE
    if not (Path(settings.var_dir) / KEY_FILE).exists() or not path.exists():
        return False
    try:
        mark: Any = json.loads(path.read_text(encoding="utf-8"))
        return bool(mark.get("fingerprint") == fingerprint(_key_set(settings)))
    except (ValueError, AttributeError):
        return False
