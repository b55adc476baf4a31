"""Run an ASGI app under uvicorn in a background thread, for loopback tests and the demo.

The server gets its own event loop in a daemon thread, so synchronous code (the demo, a test
using a blocking client) and async tests alike can talk to it over a real socket.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Literal, Self

from llm_obs_middleware.asgi.aliases import ASGIApp
from llm_obs_middleware.config.extras import require_uvicorn

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """An ASGI app served by uvicorn on a loopback port in a background thread.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`)::

        with BackgroundServer(app) as server:
            httpx.get(server.url + "/health")

    Args:
        app: the ASGI application.
        host: interface to bind (loopback by default).
        port: port to bind; ``0`` picks a free one (read it back from :attr:`port`).
        log_level: uvicorn's log level.
        lifespan: uvicorn's lifespan mode (``auto`` runs the app's startup/shutdown if it has them).
        startup_timeout: seconds to wait for the server to accept connections.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        lifespan: Literal["auto", "on", "off"] = "auto",
        startup_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._startup_timeout = startup_timeout
        require_uvicorn("BackgroundServer")
        import uvicorn

        # log_config=None: leave the process's logging set-up alone (uvicorn would replace it).
        config = uvicorn.Config(
            app,
            log_level=log_level,
            log_config=None,
            lifespan=lifespan,
            ws="none",
            access_log=False,
            timeout_graceful_shutdown=5,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """Base URL of the server, e.g. ``http://127.0.0.1:54321``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        """Bind the socket, start the thread and wait until the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("server already started")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP,
        # and without it every keep-alive response waits ~40 ms for a delayed ACK (Nagle).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
        except OSError:
            sock.close()
            raise
        # Binding here (not in uvicorn) gives us the port before the thread starts.
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(target=self._run, args=(sock,), name=f"uvicorn:{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                error, self._error = self._error, None
                self._server.should_exit = True
                self._thread.join(timeout=5)
                self._thread = None
                raise RuntimeError(f"server on {self.url} failed to start") from error
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit, wait for the thread, and re-raise an error the server died of."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._server.should_exit = True
            thread.join(timeout=10)
            if thread.is_alive():  # a stuck connection: stop waiting for it
                self._server.force_exit = True
                thread.join(timeout=5)
        error, self._error = self._error, None
        if error is not None and not isinstance(error, SystemExit):
            raise RuntimeError(f"server on {self.url} crashed") from error

    def _run(self, sock: socket.socket) -> None:
        try:
            self._server.run(sockets=[sock])
        except BaseException as exc:  # kept for stop(): an exception escaping a thread only gets printed
            self._error = exc
        finally:
            sock.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
