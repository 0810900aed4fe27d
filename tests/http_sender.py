"""A small HTTP-API sender on the shared delivery policy: the worked example of docs/senders.md.

It POSTs each message as JSON to ``<url>/messages`` with a bearer token, the way transactional-email APIs
(Postmark, SendGrid, Mailgun ...) take mail, and maps the HTTP reply onto a status. Concurrency, the rate
limit, retries with backoff and the pause come from :class:`DeliveryPolicy`; this module is hooks only.
Test-only (it talks to the loopback API in tests/test_delivery_policy.py); httpx is a dev dependency.
"""

from __future__ import annotations

import base64
import os
import ssl

import httpx

from campaigns.config import Settings
from campaigns.senders.base import OutgoingMessage, Sender, SendResult, SendStatus
from campaigns.senders.policy import DeliveryPolicy, PauseSending, PolicySender

#: the API's own error words for a final refusal; any other 4xx is REJECTED
ERRORS = {"hard_bounce": SendStatus.HARD_BOUNCE, "complaint": SendStatus.COMPLAINT}
#: failures before the request was written: nothing can have been delivered, so the policy may retry
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteError, httpx.WriteTimeout)


class HttpApiSender(PolicySender[httpx.AsyncClient]):
    name = "http-api"

    def __init__(self, url: str, token: str, policy: DeliveryPolicy | None = None, timeout: float = 10.0):
        super().__init__(policy)
        self.url, self.timeout = url.rstrip("/"), timeout
        self._headers = {"Authorization": f"Bearer {token}"}  # never shown: target is the URL only
        self._tls = ssl.create_default_context()  # built once: ~25 ms each time would stall the loop

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpApiSender:
        """For ``--sender tests.http_sender:HttpApiSender``: the URL and token from the environment."""
        policy = DeliveryPolicy.from_settings(settings)
        return cls(os.environ["RETAIN_HTTP_API_URL"], os.environ["RETAIN_HTTP_API_TOKEN"], policy)

    @property
    def target(self) -> str:  # named in pause messages
        return self.url

    async def open_connection(self) -> httpx.AsyncClient:  # one keep-alive connection per worker
        limits = httpx.Limits(max_connections=1)
        return httpx.AsyncClient(
            base_url=self.url, headers=self._headers, timeout=self.timeout, verify=self._tls, limits=limits
        )

    def reusable(self, conn: httpx.AsyncClient) -> bool:
        return not conn.is_closed

    async def close_connection(self, conn: httpx.AsyncClient, graceful: bool) -> None:
        await conn.aclose()

    async def attempt(self, conn: httpx.AsyncClient, message: OutgoingMessage) -> SendResult:
        raw = base64.b64encode(message.data).decode("ascii")
        body = {"from": message.mail_from, "to": message.rcpt_to, "raw": raw}
        try:
            reply = await conn.post("/messages", json=body)
        except NOT_SENT as exc:  # ConnectError, ConnectTimeout, PoolTimeout, WriteError, WriteTimeout
            return SendResult(message.key, SendStatus.DEFERRED, f"request not sent ({type(exc).__name__})")
        except httpx.TransportError as exc:  # the request went out, the reply did not come back
            detail = f"no reply after the request was sent ({type(exc).__name__}); it may have been delivered"
            return SendResult(message.key, SendStatus.UNKNOWN, detail)
        status, code = reply.status_code, f"http_{reply.status_code}"
        if reply.is_success:
            return SendResult(message.key, SendStatus.SENT, code=code)
        if status in (401, 403):  # retrying with the same token cannot help: pause the run
            raise PauseSending(f"{self.url} refused the API token ({status})")
        error = reply.json().get("error", "") if "json" in reply.headers.get("content-type", "") else ""
        detail = f"{status} {error or reply.reason_phrase}"
        if status == 429 or status >= 500:  # "try later"
            return SendResult(message.key, SendStatus.DEFERRED, detail, code)
        return SendResult(message.key, ERRORS.get(error, SendStatus.REJECTED), detail, code)


_: type[Sender] = HttpApiSender  # mypy checks that the class satisfies the Sender protocol
