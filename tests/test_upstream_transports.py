"""Both upstream transports behave the same to the rest of the stack: same bytes, same errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from llm_obs_middleware import Config
from llm_obs_middleware.errors import (
    ConfigurationError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamPoolFull,
    UpstreamTimeout,
)
from llm_obs_middleware.middleware.stack import LLMObservability
from llm_obs_middleware.upstream.client import (
    build_client,
    direct_request,
    iter_body,
    send_upstream,
    transport_name,
    upstream_request,
)

TRANSPORTS = ("aiohttp", "httpx")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    await reader.readexactly(length)


async def _serve(handler: Handler) -> AsyncIterator[str]:
    """A one-off HTTP/1.1 server on loopback that misbehaves as ``handler`` says."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (asyncio.CancelledError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve_one, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _exchange(
    name: str, url: str, *, path: str = "/v1/chat/completions", read_timeout: float = 5.0
) -> list[bytes]:
    client = build_client(transport_name=name)  # type: ignore[arg-type]
    try:
        request = client.build_request(
            "POST", url + path, content=b"{}", timeout=httpx.Timeout(read_timeout, connect=2.0)
        )
        response = await send_upstream(client, request, provider="p")
        try:
            return [chunk async for chunk in iter_body(response, provider="p")]
        finally:
            await response.aclose()
    finally:
        await client.aclose()


def test_auto_picks_aiohttp_when_the_fast_extra_is_installed() -> None:
    assert transport_name(build_client()) == "aiohttp"
    assert transport_name(build_client(transport_name="httpx")) == "httpx"
    stack = LLMObservability(lambda *a: None, config=Config(upstream_transport="httpx"))  # type: ignore[arg-type,return-value]
    assert transport_name(stack.client) == "httpx"


def test_unknown_transport_name_is_a_config_error() -> None:
    with pytest.raises(Exception, match="upstream_transport"):
        Config.from_dict({"upstream_transport": "curl"})
    assert issubclass(ConfigurationError, ValueError)


@pytest.mark.parametrize("name", TRANSPORTS)
async def test_streamed_bytes_arrive_unchanged_and_unbuffered(name: str) -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        writer.write(b"5\r\ndata:\r\n")
        await writer.drain()
        await release.wait()  # the second chunk only once the first reached the client
        writer.write(b"7\r\n 1\n\ndon\r\n0\r\n\r\n")
        await writer.drain()
        writer.close()

    async for url in _serve(handler):
        client = build_client(transport_name=name)  # type: ignore[arg-type]
        response = await send_upstream(client, client.build_request("POST", url, content=b"{}"), provider="p")
        body = iter_body(response, provider="p")
        assert await anext(body) == b"data:"
        release.set()
        assert b"".join([chunk async for chunk in body]) == b" 1\n\ndon"
        await response.aclose()
        await client.aclose()


@pytest.mark.parametrize("name", TRANSPORTS)
async def test_refused_connection_is_a_connect_error(name: str) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(UpstreamConnectError, match="could not be reached"):
        await _exchange(name, f"http://127.0.0.1:{port}")


@pytest.mark.parametrize("name", TRANSPORTS)
async def test_connection_closed_before_headers_is_a_connect_error(name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.close()

    async for url in _serve(handler):
        with pytest.raises(UpstreamConnectError):
            await _exchange(name, url)


@pytest.mark.parametrize("name", TRANSPORTS)
async def test_silence_before_headers_is_a_first_byte_timeout(name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(3)

    async for url in _serve(handler):
        with pytest.raises(UpstreamTimeout, match="first byte"):
            await _exchange(name, url, read_timeout=0.3)


@pytest.mark.parametrize("name", TRANSPORTS)
async def test_drop_mid_body_is_a_disconnect_not_a_timeout(name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    async for url in _serve(handler):
        with pytest.raises(UpstreamError, match="closed the connection mid-response") as raised:
            await _exchange(name, url)
        assert not isinstance(raised.value, UpstreamTimeout)


@pytest.mark.parametrize("name", TRANSPORTS)
async def test_silence_mid_body_is_a_timeout(name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(3)

    async for url in _serve(handler):
        with pytest.raises(UpstreamTimeout, match="stopped sending"):
            await _exchange(name, url, read_timeout=0.3)


def test_our_client_sends_exactly_the_forwarded_headers() -> None:
    client = build_client()
    timeout = httpx.Timeout(7.0, connect=2.0)
    headers = [(b"content-type", b"application/json"), (b"user-agent", b"OpenAI/Python 1.99")]
    request = upstream_request(
        client, "POST", "http://127.0.0.1:9/v1/chat/completions?x=1", headers=headers, content=b"{}", timeout=timeout
    )
    again = upstream_request(
        client, "POST", "http://127.0.0.1:9/v1/chat/completions?x=1", headers=headers, content=b"{}", timeout=timeout
    )
    assert request.headers.raw == [
        (b"Host", b"127.0.0.1:9"),
        (b"content-type", b"application/json"),
        (b"user-agent", b"OpenAI/Python 1.99"),
        (b"Content-Length", b"2"),
    ]  # no python-httpx user-agent, no accept-encoding the client did not send
    assert str(request.url) == str(again.url) == "http://127.0.0.1:9/v1/chat/completions?x=1"
    assert request.extensions["timeout"] == timeout.as_dict()
    assert request.content == b"{}"


def test_a_callers_own_client_keeps_its_defaults() -> None:
    client = httpx.AsyncClient(headers={"x-team": "search"})
    request = upstream_request(
        client, "POST", "http://127.0.0.1:9/v1/embeddings", headers=[], content=b"{}", timeout=httpx.Timeout(3.0)
    )
    assert request.headers["x-team"] == "search"
    assert request.extensions["timeout"] == httpx.Timeout(3.0).as_dict()


@pytest.mark.parametrize("name", TRANSPORTS)
async def test_the_path_arrives_exactly_as_encoded(name: str) -> None:
    # A signed request (AWS SigV4 over a Bedrock model id with ':') fails if any byte of the path changes.
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head.split(b"\r\n", 1)[0])
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()

    async for url in _serve(handler):
        path = "/bedrock/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse?a=b%2Fc"
        assert await _exchange(name, url, path=path) == [b"{}"]
    assert seen == [f"POST {path} HTTP/1.1".encode()]


async def test_a_direct_request_arrives_as_the_httpx_request_would() -> None:
    # The router skips httpx.Request on our own aiohttp client; the provider must not see a difference.
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            heads.append(head + await reader.readexactly(2))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()

    headers = [
        (b"content-type", b"application/json"),
        (b"x-api-key", b"sk-a"),
        (b"x-repeat", b"1"),
        (b"x-repeat", b"2"),
    ]
    timeout = httpx.Timeout(5.0, connect=2.0)
    async for url in _serve(handler):
        client = build_client(transport_name="aiohttp")
        try:
            target = url + "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse?a=b%2Fc"
            direct = direct_request(client, "POST", target, headers=headers, content=b"{}", timeout=timeout)
            assert direct is not None
            built = upstream_request(client, "POST", target, headers=headers, content=b"{}", timeout=timeout)
            for request in (direct, built):
                response = await send_upstream(client, request, provider="p")
                assert [chunk async for chunk in iter_body(response, provider="p")] == [b"{}"]
                await response.aclose()
        finally:
            await client.aclose()
    assert (
        direct_request(build_client(transport_name="httpx"), "GET", url, headers=[], content=b"", timeout=timeout)
        is None
    )

    def parsed(raw: bytes) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
        head, _, body = raw.partition(b"\r\n\r\n")
        line, *fields = head.split(b"\r\n")
        pairs = sorted((name.lower(), value.strip()) for name, _, value in (f.partition(b":") for f in fields))
        return line, pairs, body

    sent_direct, sent_built = (parsed(raw) for raw in heads)
    assert sent_direct == sent_built
    assert sent_direct[0] == b"POST /model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse?a=b%2Fc HTTP/1.1"
    assert (b"x-repeat", b"1") in sent_direct[1] and (b"x-repeat", b"2") in sent_direct[1]
    assert (b"content-length", b"2") in sent_direct[1]


@pytest.mark.parametrize("name", TRANSPORTS)
async def test_headers_as_received_and_the_connection_reused(name: str) -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            await _read_request(reader)
            writer.write(
                b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nX-Repeat: a\r\n"
                b"x-repeat: b\r\nRetry-After: 3\r\ncontent-length: 2\r\n\r\n{}"
            )
            await writer.drain()

    async for url in _serve(handler):
        client = build_client(transport_name=name)  # type: ignore[arg-type]
        try:
            for _ in range(3):
                response = await send_upstream(client, client.build_request("POST", url, content=b"{}"), provider="p")
                assert response.status_code == 429
                assert response.headers.get("retry-after") == "3"
                assert response.headers["Content-Type"] == "application/json"
                assert response.headers["x-repeat"] == "a, b"
                assert "missing" not in response.headers
                assert [key.lower() for key, _ in response.headers.raw][:3] == [
                    b"content-type",
                    b"x-repeat",
                    b"x-repeat",
                ]
                assert [chunk async for chunk in iter_body(response, provider="p")] == [b"{}"]
                await response.aclose()
        finally:
            await client.aclose()
    assert connections == 1  # a body read to its end gives the connection back to the pool


@pytest.mark.parametrize("name", TRANSPORTS)
async def test_request_deadline_bounds_the_wait_for_headers(name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(10)

    async for url in _serve(handler):
        client = build_client(transport_name=name)  # type: ignore[arg-type]
        try:
            request = client.build_request("POST", url, content=b"{}")
            with pytest.raises(UpstreamTimeout, match="request deadline"):
                await send_upstream(client, request, provider="p", deadline_s=0.2)
        finally:
            await client.aclose()


async def test_waiting_for_a_callers_pool_is_not_a_provider_timeout() -> None:
    # A client of the caller's own with a small pool: the wait for a connection is the gateway's
    # capacity (UpstreamPoolFull), never the provider's connect timeout that would cool it down.
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"{}")
        await writer.drain()

    async for url in _serve(handler):
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=1)) as client:
            timeout = httpx.Timeout(5.0, pool=0.05)
            held = await send_upstream(client, client.build_request("POST", url, timeout=timeout), provider="p")
            with pytest.raises(UpstreamPoolFull, match="no free connection") as raised:
                await send_upstream(client, client.build_request("POST", url, timeout=timeout), provider="p")
            assert not isinstance(raised.value, UpstreamError)
            release.set()
            assert [chunk async for chunk in iter_body(held, provider="p")] == [b"{}"]
            await held.aclose()


@pytest.mark.parametrize("name", TRANSPORTS)
async def test_header_bytes_arrive_exactly_as_given(name: str) -> None:
    # What a signer (Bedrock's SigV4) signed is what the provider gets: aiohttp re-encoded latin-1 text.
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:  # keep-alive: both requests may come on one connection
            heads.append(await reader.readuntil(b"\r\n\r\n"))
            await reader.readexactly(2)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()

    value = "application/json; charset=ünïcode".encode()
    timeout = httpx.Timeout(5.0, connect=2.0)
    async for url in _serve(handler):
        client = build_client(transport_name=name)  # type: ignore[arg-type]
        try:
            headers = [(b"content-type", value)]
            request = direct_request(client, "POST", url, headers=headers, content=b"{}", timeout=timeout)
            built = upstream_request(client, "POST", url, headers=headers, content=b"{}", timeout=timeout)
            for sent in (request, built):
                if sent is None:
                    continue
                response = await send_upstream(client, sent, provider="p")
                await response.aclose()
        finally:
            await client.aclose()
    assert len(heads) == (2 if name == "aiohttp" else 1)
    assert all(b"\r\ncontent-type: " + value + b"\r\n" in head.lower() for head in heads), heads
