"""SMTP sender: the SMTP hooks on top of the shared delivery policy (:mod:`campaigns.senders.policy`).

The policy's engine owns the send loop (one asyncio loop thread, ``concurrency`` workers, the rate limit,
retries, the pause); this module opens aiosmtplib connections (reused for up to ``max_per_connection``
messages, across batches) and turns one MAIL / RCPT / DATA exchange into a :class:`SendResult`. Why one
loop thread and not a thread per connection: SMTP sending is waiting on round trips, and one loop keeps 64
connections busy with one core's share of CPU (see docs/senders.md for the measurements).

Reply codes onto statuses (``code`` is ``"smtp_<reply>"``):

* 250 after DATA: SENT.
* 5xx on RCPT meaning a bad address (an enhanced status code 5.1.x other than the sender's 5.1.7 / 5.1.8;
  without an enhanced code, 550 / 551 / 553): HARD_BOUNCE, and the runner suppresses the address.
* any other 5xx on RCPT or DATA: REJECTED (final).
* 5xx on MAIL FROM: the server refuses *us*, not the recipient: DEFERRED without a retry in this call
  (``should_retry``), so the message waits for a later pass of the run; it counts toward the pause.
* 4xx anywhere, or a connection lost / timed out before the message payload was written: DEFERRED, which
  the policy retries (another connection, exponential backoff) before reporting it.
* a connection lost or timed out *after* the payload was written, before the server's final reply:
  UNKNOWN, never retried. The server may hold the message; sending it again could deliver it twice
  (at most once, docs/sending.md). The wait for that final reply is ``final_reply_timeout`` (default
  600 s, RFC 5321 4.5.3.2.6's ten minutes), not the per-command ``timeout``: a server that stores the
  message and then takes long to say so is not cut off after 30 s.
* a refused login, or a server certificate that does not verify: the batch pauses (PauseSending) with the
  reason (for TLS: which CA options to set); a host that cannot be reached: DEFERRED.
"""

from __future__ import annotations

import os
import re
import ssl
from dataclasses import dataclass, field

import aiosmtplib
import numpy as np

from campaigns.errors import ConfigError
from campaigns.senders.base import OutgoingMessage, Sender, SendResult, SendStatus
from campaigns.senders.policy import DeliveryPolicy, PauseSending, PolicySender, TemporaryFailure

TLS_MODES = ("auto", "none", "starttls", "implicit")
#: basic reply codes on RCPT that mean the mailbox is bad, when the server gives no enhanced status code
HARD_BOUNCE_CODES = frozenset({550, 551, 553})
_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})(?!\S)")
#: RFC 5321 4.5.3.2.6: the client should wait at least 10 minutes for the reply to the final "."
FINAL_REPLY_TIMEOUT = 600.0


@dataclass(frozen=True)
class SmtpOptions:
    """How to reach the server: ``tls`` is ``auto`` (STARTTLS when offered), ``none``, ``starttls``
    (required) or ``implicit`` (smtps); ``cafile`` / ``capath`` name the CA certificates to verify the
    server against instead of the system's (a PEM file / a directory hashed by ``openssl rehash``).
    ``timeout`` bounds each command; ``final_reply_timeout`` the wait for the reply after the message
    data. How hard to push it is the :class:`DeliveryPolicy`."""

    host: str
    port: int = 25
    tls: str = "auto"
    username: str = ""
    password: str = field(default="", repr=False)
    verify: bool = True
    timeout: float = 30.0
    max_per_connection: int = 1000
    local_hostname: str | None = None
    final_reply_timeout: float = FINAL_REPLY_TIMEOUT
    cafile: str = ""
    capath: str = ""

    def __post_init__(self) -> None:
        if self.tls not in TLS_MODES:
            raise ConfigError(f"smtp option tls={self.tls!r}: expected one of {', '.join(TLS_MODES)}")
        if self.max_per_connection < 1:
            raise ConfigError(
                f"smtp option max_per_connection must be at least 1, got {self.max_per_connection}"
            )
        if self.timeout < 0:
            raise ConfigError(f"smtp option timeout must not be negative, got {self.timeout}")
        if self.final_reply_timeout <= 0:
            raise ConfigError(
                f"smtp option final_reply_timeout must be positive, got {self.final_reply_timeout}"
            )
        if (self.cafile or self.capath) and not self.verify:
            raise ConfigError("smtp options cafile/capath verify the server: they cannot go with verify=0")
        if self.cafile and not os.path.isfile(self.cafile):
            raise ConfigError(
                f"smtp option cafile={self.cafile!r}: no such file (a PEM file of CA certificates)"
            )
        if self.capath and not os.path.isdir(self.capath):
            raise ConfigError(f"smtp option capath={self.capath!r}: no such directory")

    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context for ``cafile`` / ``capath`` (None: aiosmtplib's default, the system's CAs).

        Raises ConfigError naming the option when the certificates cannot be read."""
        if not (self.cafile or self.capath):
            return None
        try:
            return ssl.create_default_context(cafile=self.cafile or None, capath=self.capath or None)
        except (ssl.SSLError, OSError) as exc:
            which = f"cafile={self.cafile!r}" if self.cafile else f"capath={self.capath!r}"
            raise ConfigError(f"smtp option {which}: cannot load CA certificates ({exc})") from None


@dataclass(slots=True)
class SmtpConnection:
    """One pooled SMTP session and how many messages it carried."""

    client: aiosmtplib.SMTP
    sent: int = 0


class SmtpSender(PolicySender[SmtpConnection]):
    """Sends through one SMTP server; see the module docstring for the statuses."""

    name = "smtp"

    def __init__(self, options: SmtpOptions, policy: DeliveryPolicy | None = None) -> None:
        super().__init__(policy)
        self.options = options
        self._tls_context = options.tls_context()

    def __repr__(self) -> str:
        o = self.options
        user = f"{o.username}:***@" if o.username else ""
        return (
            f"SmtpSender(smtp://{user}{o.host}:{o.port}?tls={o.tls}, concurrency={self.policy.concurrency})"
        )

    @property
    def target(self) -> str:
        return f"{self.options.host}:{self.options.port}"

    # -- connections -------------------------------------------------------------------------------------
    async def open_connection(self) -> SmtpConnection:
        o = self.options
        client = aiosmtplib.SMTP(
            hostname=o.host,
            port=o.port,
            username=o.username or None,
            password=o.password or None,
            timeout=o.timeout,
            use_tls=o.tls == "implicit",
            start_tls={"auto": None, "none": False, "starttls": True, "implicit": False}[o.tls],
            validate_certs=o.verify,
            local_hostname=o.local_hostname,
            tls_context=self._tls_context,
        )
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:  # connect() skips it when there is no TLS or AUTH to negotiate
                try:
                    await client.ehlo()
                except aiosmtplib.SMTPHeloError:
                    await client.helo()
        except aiosmtplib.SMTPAuthenticationError as exc:
            client.close()
            raise PauseSending(
                f"the SMTP server refused the login for user {o.username!r}: {exc.code} {exc.message}"
            ) from None
        except (TimeoutError, aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            client.close()
            tls = _tls_error(exc)
            if isinstance(tls, ssl.SSLCertVerificationError):  # retrying cannot make it verify
                raise PauseSending(self.tls_failure(tls)) from None
            if tls is not None:
                raise TemporaryFailure(f"TLS with {self.target} failed: {_ssl_reason(tls)}") from None
            raise TemporaryFailure(f"cannot connect to {self.target}: {exc}") from None
        return SmtpConnection(client)

    def tls_failure(self, exc: ssl.SSLError) -> str:
        """What a certificate failure means and what to set (shown in the run's summary and ``run show``)."""
        o = self.options
        trusted = (
            f"the CA certificates of {'cafile=' + o.cafile if o.cafile else 'capath=' + o.capath}"
            if o.cafile or o.capath
            else "the system's CA certificates"
        )
        return (
            f"TLS with {self.target} failed: {_ssl_reason(exc)}. The server's certificate is not signed by "
            f"{trusted} (or does not name {o.host}): add its CA with cafile=/path/ca.pem or capath=/dir to "
            "the sender DSN (or set SSL_CERT_FILE), or verify=0 to accept any certificate (not recommended)"
        )

    def reusable(self, conn: SmtpConnection) -> bool:
        return conn.client.is_connected and conn.sent < self.options.max_per_connection

    def should_retry(self, result: SendResult) -> bool:
        return not (result.code or "").startswith("smtp_5")  # a 5xx (to MAIL FROM) is not repeated now

    async def close_connection(self, conn: SmtpConnection, graceful: bool) -> None:
        client = conn.client
        if graceful and client.is_connected:
            try:
                await client.quit(timeout=5)
                return
            except (TimeoutError, aiosmtplib.SMTPException, OSError):
                pass
        client.close()

    # -- one message -------------------------------------------------------------------------------------
    async def attempt(self, conn: SmtpConnection, message: OutgoingMessage) -> SendResult:
        try:
            mail_from, rcpt_to = _envelope_address(message.mail_from), _envelope_address(message.rcpt_to)
        except ValueError as exc:  # an address that cannot go into an SMTP command
            return SendResult(message.key, SendStatus.REJECTED, f"invalid address: {exc}")
        client = conn.client
        stage = "MAIL FROM"
        written = False  # whether the message payload went onto the wire
        try:
            response = await client.execute_command(b"MAIL", b"FROM:" + mail_from)
            if response.code != 250:
                return await _refused(client, message.key, stage, response.code, response.message)
            stage = "RCPT TO"
            response = await client.execute_command(b"RCPT", b"TO:" + rcpt_to)
            if response.code not in (250, 251):
                return await _refused(client, message.key, stage, response.code, response.message)
            stage = "DATA"
            protocol = client.protocol
            if protocol is None or not hasattr(protocol, "_response_pending"):
                written = True  # the fallback cannot tell when the payload went out: assume it did
                response = await client.data(message.data, timeout=self.options.final_reply_timeout)
            else:
                response = await client.execute_command(b"DATA")
                if response.code != 354:
                    return await _refused(client, message.key, stage, response.code, response.message)
                # the payload is written on the protocol directly: see wire_data for why
                protocol._response_pending = True  # the next bytes from the server are our reply
                protocol.write(wire_data(message.data))
                written = True
                # RFC 5321 4.5.3.2.6: the reply to the final "." may take minutes (the server is storing it)
                response = await protocol.read_response(timeout=self.options.final_reply_timeout)
            if response.code != 250:
                return await _refused(client, message.key, stage, response.code, response.message, written)
        except aiosmtplib.SMTPResponseException as exc:  # from the client.data fallback
            return await _refused(client, message.key, stage, exc.code, exc.message, written)
        except (TimeoutError, aiosmtplib.SMTPException, OSError) as exc:
            client.close()  # the session is out of step with the server: never reuse it
            why = f"{type(exc).__name__}: {exc}"
            if written:
                return SendResult(
                    message.key,
                    SendStatus.UNKNOWN,
                    f"DATA: no final reply after the message was sent ({why}); "
                    "it may have been delivered, so it is not sent again",
                )
            return SendResult(message.key, SendStatus.DEFERRED, f"{stage}: connection lost ({why})")
        conn.sent += 1
        return SendResult(message.key, SendStatus.SENT, code="smtp_250")


def _tls_error(exc: BaseException) -> ssl.SSLError | None:
    """The ssl error behind ``exc`` (aiosmtplib wraps some in its own exceptions), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _ssl_reason(exc: ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError) and exc.verify_message:
        return f"certificate verify failed ({exc.verify_message})"
    return exc.reason or str(exc)


async def _refused(
    client: aiosmtplib.SMTP, key: str, stage: str, code: int, text: str, written: bool = False
) -> SendResult:
    """The result of an unwelcome reply at ``stage`` (``written``: after the payload); the session is reset
    (or closed) for the next message."""
    if code != 421 and client.is_connected:
        try:
            await client.rset()
        except (TimeoutError, aiosmtplib.SMTPException, OSError):
            client.close()
    else:
        client.close()
    detail = f"{stage}: {code} {text}".strip()
    return SendResult(key, smtp_status(stage, code, text, written), detail, f"smtp_{code}")


def smtp_status(stage: str, code: int, text: str = "", written: bool = False) -> SendStatus:
    """The status for a reply other than 250 / 251 at ``stage`` (``"MAIL FROM"``, ``"RCPT TO"``, ``"DATA"``);
    ``text`` is the reply text (for an enhanced status code), ``written`` whether the payload was sent."""
    if 400 <= code < 500:
        return SendStatus.DEFERRED
    if code < 400:  # a reply no server should give here: after the payload, its fate is not known
        return SendStatus.UNKNOWN if written else SendStatus.DEFERRED
    if stage == "MAIL FROM":  # the server refuses us, not the recipient: for a later pass of the run
        return SendStatus.DEFERRED
    if stage == "RCPT TO":
        enhanced = _ENHANCED.match(text)
        if enhanced:
            subject, detail = enhanced.group(2), enhanced.group(3)
            # 5.1.x: addressing status; 5.1.7 / 5.1.8 are about the *sender's* address
            if subject == "1" and detail not in ("7", "8"):
                return SendStatus.HARD_BOUNCE
            return SendStatus.REJECTED
        if code in HARD_BOUNCE_CODES:
            return SendStatus.HARD_BOUNCE
    return SendStatus.REJECTED


def _envelope_address(address: str) -> bytes:
    """``<address>`` for MAIL FROM / RCPT TO; ValueError for anything that could break the command.

    Cheaper than aiosmtplib's ``quote_address`` (email.utils.parseaddr), which showed in profiles.
    """
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    if not address.isascii() or any(c in address for c in "<> \t\r\n\0") or address.count("@") != 1:
        raise ValueError(f"{address!r} is not a plain ASCII mailbox")
    return b"<" + address.encode("ascii") + b">"


def wire_data(data: bytes) -> bytes:
    """The DATA payload: CRLF line endings, dot-stuffed (RFC 5321 4.5.2), ending in ``CRLF.CRLF``.

    Same result as aiosmtplib's regex passes, which spent ~0.3 ms per 10 KB email (most of the sender's CPU
    in the benchmark); :meth:`SmtpSender.attempt` writes this payload on aiosmtplib's protocol directly,
    leaning on one private flag of it (``_response_pending``), and falls back to ``client.data`` if that
    flag ever disappears. The scan for bare CR/LF and for lines starting with a dot is
    done by numpy (~20 us on a 50 KB email; the ``bytes.count``/``in`` passes took ~200 us, a fifth of
    the worker's CPU per message in the scale benchmark); only a payload that needs it is rewritten.
    """
    if data:
        a = np.frombuffer(data, dtype=np.uint8)
        lf = a == 10
        cr = a == 13
        # canonical: every CR is followed by an LF and every LF follows a CR
        canonical = not lf[0] and not cr[-1] and np.array_equal(cr[:-1], lf[1:])
        dotted = bool(np.any(lf[:-1] & (a[1:] == 46))) if canonical else True
    else:
        canonical, dotted = True, False
    if not canonical:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    if dotted and b"\n." in data:
        data = data.replace(b"\r\n.", b"\r\n..")
    return data + b".\r\n"


_: type[Sender] = SmtpSender  # mypy checks that the class satisfies the Sender protocol
