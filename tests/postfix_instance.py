"""A test-owned Postfix: its own config_directory, queue_directory and data_directory in a temporary
directory, SMTP on 127.0.0.1 at a free port (never 25), every recipient delivered by virtual(8) into one
Maildir there. Started with ``postfix -c DIR start`` and stopped with ``postfix -c DIR stop``.

The directory is made with ``tempfile`` (mode 0711, not under pytest's 0700 tree) because Postfix's
daemons run as the ``postfix`` user and deliver as ``nobody``, and must reach it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
MASTER_CF = Path("/etc/postfix/master.cf")


def postfix_missing() -> str | None:
    if not Path(POSTFIX).exists() or not MASTER_CF.exists():
        return "Postfix is not installed (apt-get install postfix)"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "Postfix is installed without its 'postfix' user"
    if os.geteuid() != 0:
        return "a test-owned Postfix must be started as root"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Postfix:
    root: Path
    port: int

    @property
    def maildir(self) -> Path:
        return self.root / "mail" / "inbox"

    @property
    def log(self) -> Path:
        return self.root / "maillog"

    def delivered(self) -> list[Path]:
        new = self.maildir / "new"
        return sorted(new.iterdir()) if new.exists() else []

    def wait_for(self, count: int, seconds: float = 60.0) -> list[Path]:
        """The delivered files once there are ``count`` (waits on the Maildir, bounded in time)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = self.delivered()
            if len(found) >= count:
                return found
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace").splitlines()[-15:] if self.log.exists() else []
        raise AssertionError(f"{len(self.delivered())} of {count} delivered; maillog:\n" + "\n".join(tail))


def _main_cf(root: Path, nobody: int) -> str:
    return f"""compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.retain-test.localhost
mydomain = retain-test.localhost
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_recipient_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
virtual_mailbox_domains = static:all
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:{nobody}
virtual_gid_maps = static:{nobody}
maillog_file_prefixes = {root}
maillog_file = {root}/maillog
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtputf8_enable = no
message_size_limit = 20480000
"""


def _master_cf(port: int) -> str:
    """Debian's master.cf with smtpd on 127.0.0.1:port, no chroot, and postlogd for maillog_file."""
    lines = []
    for line in MASTER_CF.read_text().splitlines():
        fields = line.split()
        if line and line[0].isalnum() and len(fields) >= 8:
            if fields[0] == "smtp" and fields[1] == "inet":
                fields[0] = f"127.0.0.1:{port}"
            if fields[0] == "postlog":
                continue
            fields[4] = "n"  # no chroot: the daemons need no copies of /etc
            line = " ".join(fields)
        lines.append(line)
    lines.append("postlog unix-dgram n - n - 1 postlogd")
    return "\n".join(lines) + "\n"


def _postfix(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # `script` gives postfix a terminal, so its fatal messages reach stderr instead of a missing syslog
    command = " ".join([POSTFIX, "-c", str(root / "conf"), *args])
    runner = ["script", "-qec", command, "/dev/null"] if shutil.which("script") else command.split()
    return subprocess.run(runner, capture_output=True, text=True, timeout=120, check=False)


@contextmanager
def postfix_instance() -> Iterator[Postfix]:
    """A running test-owned Postfix; stopped (and its directory removed) afterwards."""
    nobody = pwd.getpwnam("nobody").pw_uid
    postfix_uid = pwd.getpwnam("postfix").pw_uid
    root = Path(tempfile.mkdtemp(prefix="retain-postfix-"))
    root.chmod(0o711)
    for sub in ("conf", "queue", "data", "mail"):
        (root / sub).mkdir()
    os.chown(root / "data", postfix_uid, -1)
    os.chown(root / "mail", nobody, nobody)
    port = free_port()
    (root / "conf" / "main.cf").write_text(_main_cf(root, nobody))
    (root / "conf" / "master.cf").write_text(_master_cf(port))
    started = _postfix(root, "start")
    try:
        if started.returncode != 0:
            raise AssertionError(f"postfix -c {root}/conf start failed: {started.stdout}{started.stderr}")
        deadline = time.monotonic() + 30
        while True:  # wait until smtpd accepts connections
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"Postfix never listened on 127.0.0.1:{port}") from None
                time.sleep(0.1)
        yield Postfix(root, port)
    finally:
        pid_file = root / "queue" / "pid" / "master.pid"
        pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        _postfix(root, "stop")
        deadline = time.monotonic() + 30
        while pid is not None and Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)  # the master and its children are gone before the directory goes
        shutil.rmtree(root, ignore_errors=True)
