"""Running an app with uvicorn: in the foreground (the CLI) or in a background thread (tests, demos)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn

from campaigns.errors import ConfigError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _config(app: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=1,  # open live-reload streams must not hold up Ctrl-C
        proxy_headers=False,
    )


def serve(app: Any, host: str, port: int) -> None:
    """Serve ``app`` until interrupted; ConfigError when the address cannot be bound."""
    server = uvicorn.Server(_config(app, host, port))
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror} (choose another --port)") from None
    server.run()


class ServerThread:
    """``with ServerThread(app) as url:`` serves ``app`` on 127.0.0.1 at a free port in a daemon thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.server = uvicorn.Server(_config(app, host, self.port))
        self.thread = threading.Thread(target=self.server.run, name="retain-web", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the web server did not start on {self.url}")
            time.sleep(0.02)
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
