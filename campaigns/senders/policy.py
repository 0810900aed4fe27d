"""The delivery policy every network sender shares: concurrency, rate limit, retries with backoff, pause.

A transport subclasses :class:`PolicySender` and writes hooks only (django-anymail's base backend is the
model: the base owns the send loop, a provider fills in the transport)::

    class MySender(PolicySender[MyConnection]):
        name = "mine"
        async def open_connection(self) -> MyConnection: ...              # required
        async def attempt(self, conn, message) -> SendResult: ...        # required: one try, one result
        async def close_connection(self, conn, graceful) -> None: ...    # optional (default: nothing)
        def reusable(self, conn) -> bool: ...                            # optional (default: True)
        def should_retry(self, result) -> bool: ...                      # optional (default: True)

``send_batch`` hands the batch to an asyncio loop in one background thread, where up to
``policy.concurrency`` workers each hold one connection (kept in an idle pool between batches) and take
messages from a shared queue; results travel back through a thread-safe queue and ``on_result`` runs in
the caller's thread. What the engine does with the status an ``attempt`` returns:

* SENT: reported; resets the consecutive-failure count.
* DEFERRED (a temporary failure of this try: 4xx, connection lost *before* the payload was written): tried
  again on another turn after an exponential backoff with jitter, up to ``max_attempts``; then reported
  DEFERRED (``"gave up after N attempt(s); last: ..."``) for a later run to retry. A transport's
  ``should_retry`` may decline the retries (reported DEFERRED at once).
* REJECTED, HARD_BOUNCE, COMPLAINT, UNKNOWN: reported at once, never retried (UNKNOWN means the payload
  may have arrived: retrying could deliver it twice).

Every message that *ends* not SENT counts toward ``max_consecutive_failures`` (a server answering 5xx to
everyone is a server problem, not 50 bad addresses); any SENT resets the count. Failed *attempts* do not
count, so greylisting (a 4xx on every first try) does not pause. A worker whose attempt failed (anything
but SENT, HARD_BOUNCE, COMPLAINT) backs off before taking the next message, so a failing server is not fed
the whole list. Reaching the limit, or a hook raising :class:`PauseSending` (a refused login), pauses: no
new message is attempted, messages in flight finish, messages waiting for a retry are reported DEFERRED,
and ``send_batch`` raises SenderPausedError.

:meth:`PolicySender.withdraw` (any thread) takes messages of the running batch back before a worker starts
them: the caller's last look at its suppression list while the batch is being sent. A withdrawn message gets
no result; one already being attempted is not recalled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import queue
import random
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from campaigns.errors import ConfigError, SenderPausedError
from campaigns.senders.base import OutgoingMessage, ResultCallback, SenderBase, SendResult, SendStatus

if TYPE_CHECKING:
    from campaigns.config import Settings
    from campaigns.senders.dsn import SenderDSN

__all__ = [
    "POLICY_OPTIONS",
    "DeliveryPolicy",
    "PauseSending",
    "PolicySender",
    "TemporaryFailure",
    "TokenBucket",
]

C = TypeVar("C")

#: DSN query options that set the policy, with their types (every policy-based sender accepts them)
POLICY_OPTIONS: dict[str, type[int] | type[float]] = {
    "concurrency": int,
    "rate": float,
    "burst": float,
    "max_attempts": int,
    "backoff": float,
    "backoff_max": float,
    "max_consecutive_failures": int,
}
#: statuses after which a worker does not back off: the transport worked, the recipient did not
_HEALTHY = frozenset({SendStatus.SENT, SendStatus.HARD_BOUNCE, SendStatus.COMPLAINT})


@dataclass(frozen=True, slots=True)
class DeliveryPolicy:
    """How hard to push a transport, and when to give up.

    ``concurrency`` connections at most; ``rate`` messages per second on average (0 = unlimited) with
    bursts of ``burst`` (0 = max(1, rate / 10)); a temporary failure is tried ``max_attempts`` times in all,
    the n-th retry after ``backoff * 2**(n-1)`` seconds (capped at ``backoff_max``) jittered to 50-100 %;
    ``max_consecutive_failures`` messages in a row ending failed pause the batch.
    """

    concurrency: int = 64
    rate: float = 0.0
    burst: float = 0.0
    max_attempts: int = 4
    backoff: float = 0.5
    backoff_max: float = 30.0
    max_consecutive_failures: int = 50

    def __post_init__(self) -> None:
        for name in ("concurrency", "max_attempts", "max_consecutive_failures"):
            if getattr(self, name) < 1:
                raise ConfigError(f"delivery option {name} must be at least 1, got {getattr(self, name)}")
        for name in ("rate", "burst", "backoff", "backoff_max"):
            if getattr(self, name) < 0:
                raise ConfigError(f"delivery option {name} must not be negative, got {getattr(self, name)}")

    @classmethod
    def from_settings(cls, settings: Settings) -> DeliveryPolicy:
        """The policy the settings describe (``send_concurrency``, ``send_rate``, ``max_consecutive_failures``)."""
        return cls(
            concurrency=settings.send_concurrency,
            rate=settings.send_rate,
            max_consecutive_failures=settings.max_consecutive_failures,
        )

    @classmethod
    def from_dsn(cls, dsn: SenderDSN, settings: Settings) -> DeliveryPolicy:
        """The settings' policy with the DSN's :data:`POLICY_OPTIONS` applied (the DSN wins).

        Raises ConfigError naming the (masked) DSN for a value of the wrong type or out of range.
        """
        values = dsn.typed_options(POLICY_OPTIONS)
        try:
            return dataclasses.replace(cls.from_settings(settings), **values)
        except ConfigError as exc:
            raise ConfigError(f"sender DSN {str(dsn)!r}: {exc}") from None

    def backoff_delay(self, failures: int) -> float:
        """Seconds to wait after ``failures`` failed tries: ``backoff * 2**(failures-1)``, capped, x 0.5-1.0."""
        return min(self.backoff_max, self.backoff * 2.0 ** (failures - 1)) * random.uniform(0.5, 1.0)


class TokenBucket:
    """Rate limit shared by all workers (GCRA form of a token bucket: FIFO, no busy waiting).

    Allows ``burst`` messages at once, then ``rate`` per second on average. Loop thread only.
    """

    def __init__(self, rate: float, burst: float) -> None:
        self.interval = 1.0 / rate
        self.tolerance = (max(1.0, burst) - 1.0) * self.interval
        self.tat = 0.0  # theoretical arrival time of the next message

    async def acquire(self) -> None:
        now = time.monotonic()
        tat = max(self.tat, now)
        self.tat = tat + self.interval
        wait = tat - now - self.tolerance
        if wait > 0:
            await asyncio.sleep(wait)


class TemporaryFailure(Exception):
    """Raised by ``open_connection`` (or ``attempt``, before anything was sent): this try failed and may
    be repeated. The message is retried per the policy, then reported DEFERRED with ``detail`` and ``code``."""

    def __init__(self, detail: str, code: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.code = code


class PauseSending(Exception):
    """Raised by a hook to pause the batch at once (e.g. the server refused the login). The message being
    tried gets no result (it was not sent), like the messages never attempted."""


@dataclass(slots=True)
class _Job:
    message: OutgoingMessage
    attempts: int = 0
    finished: bool = False
    last: SendResult | None = None


class _Batch:
    """State of one ``send_batch`` call, owned by the loop thread."""

    def __init__(self, messages: Sequence[OutgoingMessage], emit: Callable[[SendResult], None]) -> None:
        # retries (priority 0) go before new messages (1), so a failing server sees few new messages
        self.queue: asyncio.PriorityQueue[tuple[int, int, _Job | None]] = asyncio.PriorityQueue()
        self.seq = itertools.count()
        for message in messages:
            self.put(1, _Job(message))
        self.outstanding = len(messages)
        self.emit = emit
        self.done = asyncio.Event()
        self.paused: str = ""  # the reason, once paused
        self.withdrawn: set[str] = set()  # keys the caller took back (see PolicySender.withdraw)
        self.timers: dict[int, tuple[asyncio.TimerHandle, _Job]] = {}

    def put(self, priority: int, job: _Job | None) -> None:
        self.queue.put_nowait((priority, next(self.seq), job))

    def finish(self, job: _Job, result: SendResult | None) -> None:
        job.finished = True
        if result is not None:
            self.emit(result)
        self.outstanding -= 1
        if self.outstanding == 0:
            self.done.set()


class PolicySender(SenderBase, ABC, Generic[C]):
    """A sender whose send loop is the shared :class:`DeliveryPolicy`; subclasses write the hooks only.

    ``C`` is the transport's connection type. See the module docstring for what the engine does with
    each status; ``connections_opened`` counts ``open_connection`` calls that succeeded (for tests).
    """

    name = "policy"

    def __init__(self, policy: DeliveryPolicy | None = None) -> None:
        self.policy = policy or DeliveryPolicy()
        p = self.policy
        self._bucket = TokenBucket(p.rate, p.burst or p.rate / 10) if p.rate else None
        self._idle: list[C] = []
        self._consecutive_failures = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._current: _Batch | None = None
        self.connections_opened = 0

    # -- the hooks ---------------------------------------------------------------------------------------
    @property
    def target(self) -> str:
        """Where messages go, for messages to the user (``host:port``, a URL); never a secret."""
        return self.name

    @abstractmethod
    async def open_connection(self) -> C:
        """A new connection. Raise TemporaryFailure (or OSError / TimeoutError) when it cannot be made,
        PauseSending when retrying cannot help (refused credentials)."""

    @abstractmethod
    async def attempt(self, conn: C, message: OutgoingMessage) -> SendResult:
        """Try ``message`` once on ``conn`` and say what happened (``attempts`` is filled in by the engine).

        Return DEFERRED only if nothing can have been delivered (the payload was not written, or the
        transport said "try later"); a connection lost after the payload was written is UNKNOWN. Close
        ``conn`` (so that :meth:`reusable` is False) when it is no longer usable. Any exception raised here
        other than TemporaryFailure / PauseSending is a bug: the message is reported UNKNOWN and the batch
        pauses."""

    def reusable(self, conn: C) -> bool:
        """Whether ``conn`` may carry another message (checked after every attempt and at checkout)."""
        return True

    def should_retry(self, result: SendResult) -> bool:
        """Whether a DEFERRED ``result`` is worth another try in this call (the default: yes). False reports
        it DEFERRED at once, for a later run (e.g. SMTP's 5xx to MAIL FROM: repeating it now cannot help)."""
        return True

    async def close_connection(self, conn: C, graceful: bool) -> None:
        """Close ``conn``: ``graceful`` says goodbye to the server (e.g. SMTP QUIT) when it is still up."""

    # -- the caller's side -------------------------------------------------------------------------------
    def send_batch(self, messages: Sequence[OutgoingMessage], on_result: ResultCallback) -> None:
        """Send ``messages``; see :class:`campaigns.senders.base.Sender`. One batch at a time per sender."""
        if not messages:
            return
        with self._lock:
            loop = self._ensure_loop()
            results: queue.SimpleQueue[SendResult | None] = queue.SimpleQueue()  # None: the batch ended
            future = asyncio.run_coroutine_threadsafe(self._run_batch(messages, results.put), loop)
            future.add_done_callback(lambda _f: results.put(None))
            try:
                while (item := results.get()) is not None:
                    on_result(item)
            except BaseException:
                # the caller failed while recording: stop attempting new messages, let in-flight ones end
                loop.call_soon_threadsafe(self._pause_current, "the caller stopped the batch")
                try:
                    future.result()
                except SenderPausedError:  # the caller's own exception is the one to report
                    pass
                raise
            future.result()

    def withdraw(self, keys: Sequence[str]) -> None:
        """Take these messages of the running batch back (thread-safe): a worker that has not started one
        drops it without a result; one being attempted goes on. For the caller's suppression look while
        the batch is sent (an unsubscribe arrived)."""
        loop = self._loop
        if loop is not None and keys:
            loop.call_soon_threadsafe(self._withdraw, frozenset(keys))

    def _withdraw(self, keys: frozenset[str]) -> None:
        if self._current is not None:
            self._current.withdrawn |= keys

    def close(self) -> None:
        """Close every pooled connection (gracefully) and stop the loop thread; safe to call twice."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            try:
                asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(timeout=10)
            except (TimeoutError, OSError):  # a server that hangs on goodbye does not block shutdown
                pass
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            self._loop = self._thread = None

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name=f"retain-{self.name}", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    # -- the loop thread ---------------------------------------------------------------------------------
    async def _run_batch(
        self, messages: Sequence[OutgoingMessage], emit: Callable[[SendResult], None]
    ) -> None:
        batch = _Batch(messages, emit)
        self._current = batch
        workers = [
            asyncio.create_task(self._worker(batch))
            for _ in range(min(self.policy.concurrency, len(messages)))
        ]
        try:
            await batch.done.wait()
        finally:
            for _ in workers:
                batch.put(2, None)
            await asyncio.gather(*workers, return_exceptions=True)
            self._current = None
        if batch.paused:
            raise SenderPausedError(
                f"sending paused: {batch.paused}. Messages not attempted were left unsent; "
                "fix the cause and run the same command again to resume.",
                code=None,
            )

    def _pause_current(self, reason: str) -> None:
        if self._current is not None:
            self._pause(self._current, reason)

    def _pause(self, batch: _Batch, reason: str) -> None:
        if batch.paused:
            return
        batch.paused = reason
        self._consecutive_failures = 0  # a later batch starts with a clean count
        while not batch.queue.empty():
            job = batch.queue.get_nowait()[2]
            if job is not None:
                batch.finish(job, self._gave_up(job, "paused before this message was attempted"))
        for handle, job in list(batch.timers.values()):
            handle.cancel()
            batch.finish(job, self._gave_up(job, "paused before retrying"))
        batch.timers.clear()

    async def _worker(self, batch: _Batch) -> None:
        conn: C | None = None
        failed_in_a_row = 0
        job: _Job | None = None
        try:
            while (job := (await batch.queue.get())[2]) is not None:
                if batch.paused:
                    batch.finish(job, self._gave_up(job, "paused before retrying"))
                    continue
                if job.message.key in batch.withdrawn:  # nothing of it was delivered: drop it
                    batch.finish(job, None)
                    continue
                conn, healthy = await self._attempt(batch, job, conn)
                failed_in_a_row = 0 if healthy else failed_in_a_row + 1
                if failed_in_a_row and not batch.paused:
                    # this worker backs off too, so a server failing everything is not fed the whole list
                    await asyncio.sleep(self.policy.backoff_delay(failed_in_a_row))
        except Exception as exc:  # a bug here must pause the batch, never hang it
            if job is not None and not job.finished:
                batch.finish(job, None)
            self._pause(batch, f"internal error in the {self.name} sender ({type(exc).__name__}: {exc})")
        finally:
            if conn is not None:
                await self._release(conn)

    async def _attempt(self, batch: _Batch, job: _Job, conn: C | None) -> tuple[C | None, bool]:
        """One try of ``job``: (the connection to keep using or None, whether the transport worked)."""
        job.attempts += 1
        key = job.message.key
        try:
            conn = await self._checkout(conn)
        except PauseSending as exc:
            batch.finish(job, None)
            self._pause(batch, str(exc))
            return None, False
        except TemporaryFailure as exc:
            self._retry_or_fail(batch, job, SendResult(key, SendStatus.DEFERRED, exc.detail, exc.code))
            return None, False
        except (TimeoutError, OSError) as exc:
            detail = f"cannot connect to {self.target}: {type(exc).__name__}: {exc}"
            self._retry_or_fail(batch, job, SendResult(key, SendStatus.DEFERRED, detail))
            return None, False
        if self._bucket is not None:  # once the connection is ready, so set-up time does not bunch sends
            await self._bucket.acquire()
        try:
            result = await self.attempt(conn, job.message)
        except PauseSending as exc:
            await self._drop(conn, graceful=False)
            batch.finish(job, None)
            self._pause(batch, str(exc))
            return None, False
        except TemporaryFailure as exc:
            result = SendResult(key, SendStatus.DEFERRED, exc.detail, exc.code)
        except Exception as exc:  # a bug in the hook: whether the message went out is not known
            await self._drop(conn, graceful=False)
            reason = f"internal error in the {self.name} sender ({type(exc).__name__}: {exc})"
            batch.finish(job, SendResult(key, SendStatus.UNKNOWN, reason, None, job.attempts))
            self._pause(batch, reason)
            return None, False
        if not self.reusable(conn):
            await self._drop(conn, graceful=True)
            conn = None
        status = result.status
        if result.attempts != job.attempts or result.key != key:
            result = dataclasses.replace(result, key=key, attempts=job.attempts)
        if status is SendStatus.SENT:
            self._consecutive_failures = 0
            batch.finish(job, result)
        elif status is SendStatus.DEFERRED:
            self._retry_or_fail(batch, job, result)
        else:
            self._fail(batch, job, result)
        return conn, status in _HEALTHY

    def _retry_or_fail(self, batch: _Batch, job: _Job, result: SendResult) -> None:
        job.last = result
        if not self.should_retry(result):
            self._fail(batch, job, result)
            return
        if job.attempts >= self.policy.max_attempts or batch.paused:
            self._fail(batch, job, self._gave_up(job, "paused" if batch.paused else "gave up"))
            return
        loop = asyncio.get_running_loop()
        handle = loop.call_later(self.policy.backoff_delay(job.attempts), self._requeue, batch, job)
        batch.timers[id(job)] = (handle, job)

    def _requeue(self, batch: _Batch, job: _Job) -> None:
        batch.timers.pop(id(job), None)
        batch.put(0, job)

    def _gave_up(self, job: _Job, why: str) -> SendResult | None:
        """DEFERRED for a message tried before and not finished (None if it was never tried)."""
        if not job.attempts:
            return None
        last = job.last
        detail = f"{why} after {job.attempts} attempt(s); last: {last.detail if last else 'none'}"
        return SendResult(
            job.message.key, SendStatus.DEFERRED, detail, last.code if last else None, job.attempts
        )

    def _fail(self, batch: _Batch, job: _Job, result: SendResult | None) -> None:
        """Report a final failure and count it toward the pause limit (any success resets the count)."""
        batch.finish(job, result)
        self._consecutive_failures += 1
        limit = self.policy.max_consecutive_failures
        if self._consecutive_failures >= limit and not batch.paused:
            last = f" (last: {result.detail})" if result is not None and result.detail else ""
            self._pause(batch, f"{limit} messages in a row failed at {self.target}{last}")

    # -- the connection pool -----------------------------------------------------------------------------
    async def _checkout(self, conn: C | None) -> C:
        if conn is not None:
            if self.reusable(conn):
                return conn
            await self._drop(conn, graceful=True)
        while self._idle:
            conn = self._idle.pop()
            if self.reusable(conn):
                return conn
            await self._drop(conn, graceful=False)
        conn = await self.open_connection()
        self.connections_opened += 1
        return conn

    async def _release(self, conn: C) -> None:
        if self.reusable(conn):
            self._idle.append(conn)
        else:
            await self._drop(conn, graceful=True)

    async def _drop(self, conn: C, graceful: bool) -> None:
        try:
            await self.close_connection(conn, graceful)
        except Exception:  # closing is best effort: a broken connection must not stop the batch
            pass

    async def _close_all(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(self._drop(c, graceful=True) for c in idle), return_exceptions=True)
