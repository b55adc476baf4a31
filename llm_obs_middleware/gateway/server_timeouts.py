"""Request read deadlines for ``llm-obs serve``: uvicorn has none for request headers or bodies.

uvicorn's keep-alive timer runs only between requests and stops at the first byte of the next one, so a
client that sends a header line (or a body byte) now and then holds its connection open forever (40 of
40 such connections were still open after 60 s). These protocol classes (uvicorn's own, plus a timer)
close a connection whose request headers are not complete ``header_s`` after it opened or after the
previous response ended, or whose body is not complete ``body_s`` after that. The timer is armed once
per request, in the server, so the request path pays nothing for it.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from llm_obs_middleware.gateway.read_timeouts import ReadTimeouts

__all__ = ["ReadTimeouts", "protocol_class", "serve_uvicorn", "with_read_timeouts"]


_ATTRIBUTE = "llm_obs_read_timeouts"  # on the uvicorn Config: pickled with it into worker processes


def with_read_timeouts(config: uvicorn.Config, timeouts: ReadTimeouts) -> uvicorn.Config:
    """``config`` serving with :func:`protocol_class`'s read deadlines set to ``timeouts``."""
    setattr(config, _ATTRIBUTE, timeouts)
    return config


class _ReadTimer:
    """One connection's deadline for the request being read (see the module docstring)."""

    __slots__ = ("_body_armed", "_handle", "_protocol", "_timeouts")

    def __init__(self, protocol: Any, timeouts: ReadTimeouts) -> None:
        self._protocol = protocol
        self._timeouts = timeouts
        self._handle: asyncio.TimerHandle | None = None
        self._body_armed = False

    def arm_for_headers(self) -> None:
        self.cancel()
        self._body_armed = False
        self._handle = self._protocol.loop.call_later(self._timeouts.header_s, self._expired)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _expired(self) -> None:
        self._handle = None
        protocol = self._protocol
        cycle = protocol.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            return  # the request is read; the app is answering it
        if cycle is not None and not cycle.response_complete and not self._body_armed:
            self._body_armed = True  # headers came in time: now the body's deadline
            self._handle = protocol.loop.call_later(self._timeouts.body_s, self._expired)
            return
        # The app (if it started) sees the client gone: its receive() answers http.disconnect.
        protocol.transport.close()


class H11ReadTimeouts(H11Protocol):
    """uvicorn's h11 protocol with request read deadlines."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self._read_timer = _ReadTimer(self, getattr(config, _ATTRIBUTE, ReadTimeouts()))

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._read_timer.arm_for_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._read_timer.arm_for_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._read_timer.cancel()
        super().connection_lost(exc)


try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: uvicorn serves with h11
    HttpToolsProtocol = None  # type: ignore[assignment,misc]
else:

    class HttpToolsReadTimeouts(HttpToolsProtocol):
        """uvicorn's httptools protocol with request read deadlines."""

        def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
            super().__init__(config, *args, **kwargs)
            self._read_timer = _ReadTimer(self, getattr(config, _ATTRIBUTE, ReadTimeouts()))

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._read_timer.arm_for_headers()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._read_timer.arm_for_headers()

        def connection_lost(self, exc: Exception | None) -> None:
            self._read_timer.cancel()
            super().connection_lost(exc)


def protocol_class() -> type[asyncio.Protocol]:
    """The HTTP protocol uvicorn would pick (httptools when installed, else h11), with read deadlines."""
    return H11ReadTimeouts if HttpToolsProtocol is None else HttpToolsReadTimeouts


def serve_uvicorn(config: uvicorn.Config) -> int:
    """Run ``config`` as ``uvicorn.run`` would (which builds its own config, so it cannot carry ours)."""
    server = uvicorn.Server(config)
    try:
        if config.workers > 1:
            from uvicorn.supervisors import Multiprocess

            sockets = [config.bind_socket()]
            if "target" in inspect.signature(Multiprocess).parameters:  # older uvicorn releases
                Multiprocess(config, target=server.run, sockets=sockets).run()  # type: ignore[call-arg]
            else:
                Multiprocess(config, sockets=sockets).run()
        else:
            server.run()
    except KeyboardInterrupt:
        pass
    return 0 if server.started or config.workers > 1 else 3  # uvicorn's STARTUP_FAILURE
