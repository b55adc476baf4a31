"""``llm-obs serve`` bounds how long a client may take to send its request, and how long shutdown waits
(issue 13, finding 6): stalled request headers and bodies used to hold their connections forever."""

from __future__ import annotations

import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from llm_obs_middleware.testing import FakeProviderServer

from .test_processes import BIN, env, free_port, wait_healthy, write_config

STALLED = 10


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProviderServer]:
    with FakeProviderServer() as server:
        yield server


def serve(config: Path, port: int, *flags: str) -> subprocess.Popen[bytes]:
    command = [str(BIN / "llm-obs"), "serve", "--config", str(config), "--port", str(port), "--log-level", "warning"]
    return subprocess.Popen([*command, *flags], env=env(), stderr=subprocess.PIPE)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes ``sock`` (EOF or reset) within a generous deadline."""
    sock.settimeout(30)
    try:
        while sock.recv(65536):
            continue  # e.g. an error response before the close
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize("workers", [1, 2])
def test_stalled_request_headers_and_bodies_are_closed(fake: FakeProviderServer, tmp_path: Path, workers: int) -> None:
    port = free_port()
    flags = ["--header-timeout", "0.5", "--body-timeout", "0.5", "--workers", str(workers)]
    process = serve(write_config(tmp_path, fake.url), port, *flags)
    sockets: list[socket.socket] = []
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        for n in range(STALLED):
            sock = socket.create_connection(("127.0.0.1", port))
            sockets.append(sock)
            if n % 2:  # headers never finished
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: appl")
            else:  # headers in time, then a body that never comes
                head = b"POST /v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-length: 1000\r\n\r\n"
                sock.sendall(head + b'{"model":')
        still_open = [n for n, sock in enumerate(sockets) if not closed_by_server(sock)]
        assert still_open == []
        # A client that sends its request in time is served as before.
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
        response = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)
        assert response.status_code == 200
    finally:
        for sock in sockets:
            sock.close()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert b"Traceback" not in stderr, stderr.decode()


def test_shutdown_does_not_wait_for_a_long_stream_past_its_limit(fake: FakeProviderServer, tmp_path: Path) -> None:
    port = free_port()
    process = serve(write_config(tmp_path, fake.url), port, "--graceful-shutdown-timeout", "0.5")
    streaming = threading.Event()

    def long_stream() -> None:
        body = {"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
        headers = {"x-fake-chunks": "600", "x-fake-chunk-interval-ms": "100"}  # a minute of chunks
        try:
            with httpx.stream(
                "POST", f"http://127.0.0.1:{port}/v1/chat/completions", json=body, headers=headers, timeout=120
            ) as response:
                for _ in response.iter_bytes():
                    streaming.set()
        except httpx.HTTPError:
            pass  # cut by the shutdown

    client = threading.Thread(target=long_stream, daemon=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", process)
        client.start()
        assert streaming.wait(30)
    finally:
        process.send_signal(signal.SIGTERM)
        # Without the limit, shutdown waits for the stream's minute (the deadline here is half of it).
        process.communicate(timeout=30)
    client.join(timeout=30)
    assert not client.is_alive()  # the stream was cut, not left waiting
