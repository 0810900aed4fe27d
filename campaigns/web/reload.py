"""Live reload: watch the templates directory, tell open preview pages through server-sent events.

A :class:`TemplateWatcher` runs :func:`watchfiles.awatch` (inotify, 150 ms debounce) while the app
lives; each change bumps :attr:`version` and wakes every subscriber. The page holds an
``EventSource`` on ``/events`` and re-renders when it hears ``reload`` — well within a second of
the file being saved. Heartbeat comments every 15 s keep proxies from closing the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import watchfiles

HEARTBEAT_SECONDS = 15.0
DEBOUNCE_MS = 150


class TemplateWatcher:
    """Watches ``directory``; :meth:`changes` yields SSE frames for one subscriber."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.version = 0
        self._stop = asyncio.Event()
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.directory.is_dir():
            self._task = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        self._stop.set()
        async with self._changed:
            self._changed.notify_all()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        async for _changes in watchfiles.awatch(
            self.directory, stop_event=self._stop, debounce=DEBOUNCE_MS, step=30, recursive=True
        ):
            await self.notify()

    async def notify(self) -> None:
        """Mark the templates changed and wake every subscriber (also used by tests)."""
        async with self._changed:
            self.version += 1
            self._changed.notify_all()

    async def changes(self) -> AsyncIterator[str]:
        """SSE frames: ``retry`` first, then ``event: reload`` on each change, heartbeats between."""
        seen = self.version
        yield f"retry: 1000\ndata: hello {seen}\n\n"
        while not self._stop.is_set():

            def moved(seen: int = seen) -> bool:
                return self.version != seen or self._stop.is_set()

            async with self._changed:
                try:
                    await asyncio.wait_for(
                        self._changed.wait_for(moved),
                        timeout=HEARTBEAT_SECONDS,
                    )
                except TimeoutError:
                    yield ": heartbeat\n\n"
                    continue
            if self._stop.is_set():
                return
            seen = self.version
            yield f"event: reload\ndata: {seen}\n\n"
