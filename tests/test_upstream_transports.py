"""Every upstream implementation behaves the same to the rest of the stack: same bytes, same errors.

``aiohttp`` and ``httpx`` are the gateway's own (``upstream_transport``); ``client`` is an
``httpx.AsyncClient`` of the caller's own (the ``client=`` option).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from llm_obs_middleware import Config
from llm_obs_middleware.errors import (
    ConfigurationError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamPoolFull,
    UpstreamProtocolError,
    UpstreamTimeout,
)
from llm_obs_middleware.middleware.stack import LLMObservability
from llm_obs_middleware.upstream.client import Upstream, build_upstream, signed, upstream_of

IMPLEMENTATIONS = ("aiohttp", "httpx", "client")
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
TIMEOUTS = httpx.Timeout(5.0, connect=2.0)


@asynccontextmanager
async def _upstream(name: str, **options: object) -> AsyncIterator[Upstream]:
    if name == "client":
        async with httpx.AsyncClient(**options) as client:  # type: ignore[arg-type]
            yield upstream_of(client, Config())
        return
    upstream = build_upstream(transport_name=name, **options)  # type: ignore[arg-type]
    try:
        yield upstream
    finally:
        await upstream.aclose()


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    """One request's head (its body read and dropped)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0
    )
    await reader.readexactly(length)
    return head


async def _serve(handler: Handler) -> AsyncIterator[str]:
    """A one-off HTTP/1.1 server on loopback that misbehaves as ``handler`` says."""
    tasks: set[asyncio.Task[None]] = set()

    async def serve_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        except (asyncio.CancelledError, ConnectionError, asyncio.IncompleteReadError):
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
    name: str,
    url: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
    read_timeout: float = 5.0,
) -> list[bytes]:
    async with _upstream(name) as upstream:
        response = await upstream.send(
            "POST",
            url,
            headers or [],
            b"{}",
            timeouts=httpx.Timeout(read_timeout, connect=2.0),
            provider="p",
        )
        try:
            return [chunk async for chunk in response.chunks()]
        finally:
            await response.aclose()


def _parsed(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    line, *fields = head.rstrip(b"\r\n").split(b"\r\n")
    return line, sorted((name.lower(), value.strip()) for name, _, value in (f.partition(b":") for f in fields))


def test_auto_picks_aiohttp_when_the_fast_extra_is_installed() -> None:
    assert build_upstream().name == "aiohttp"
    assert build_upstream(transport_name="httpx").name == "httpx"
    assert build_upstream(transport=httpx.MockTransport(lambda r: httpx.Response(200))).name == "httpx"
    stack = LLMObservability(lambda *a: None, config=Config(upstream_transport="httpx"))  # type: ignore[arg-type]
    assert stack.upstream.name == "httpx"
    client_stack = LLMObservability(lambda *a: None, config=Config(), client=httpx.AsyncClient())  # type: ignore[arg-type]
    assert client_stack.upstream.name == "client" and client_stack.upstream.max_connections is None
    assert build_upstream(max_connections=7).max_connections == 7


def test_unknown_transport_name_is_a_config_error() -> None:
    with pytest.raises(Exception, match="upstream_transport"):
        Config.from_dict({"upstream_transport": "curl"})
    assert issubclass(ConfigurationError, ValueError)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
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
        async with _upstream(name) as upstream:
            response = await upstream.send("POST", url, [], b"{}", timeouts=TIMEOUTS, provider="p")
            body = response.chunks()
            assert await anext(body) == b"data:"
            release.set()
            assert b"".join([chunk async for chunk in body]) == b" 1\n\ndon"
            await response.aclose()


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_refused_connection_is_a_connect_error(name: str) -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(UpstreamConnectError, match="could not be reached"):
        await _exchange(name, f"http://127.0.0.1:{port}")


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_connection_closed_before_headers_is_a_connect_error(name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.close()

    async for url in _serve(handler):
        with pytest.raises(UpstreamConnectError):
            await _exchange(name, url)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_silence_before_headers_is_a_first_byte_timeout(name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(3)

    async for url in _serve(handler):
        with pytest.raises(UpstreamTimeout, match="first byte"):
            await _exchange(name, url, read_timeout=0.3)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_a_status_http_cannot_carry_is_a_protocol_error(name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 600 Beyond\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()

    async for url in _serve(handler):
        with pytest.raises(UpstreamProtocolError, match="status 600, outside 100-599"):
            await _exchange(name, url)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
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


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_silence_mid_body_is_a_timeout(name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        await writer.drain()
        await asyncio.sleep(3)

    async for url in _serve(handler):
        with pytest.raises(UpstreamTimeout, match="stopped sending"):
            await _exchange(name, url, read_timeout=0.3)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_the_path_arrives_exactly_as_encoded(name: str) -> None:
    # A signed request (AWS SigV4 over a Bedrock model id with ':') fails if any byte of the path changes.
    seen: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append((await _read_request(reader)).split(b"\r\n", 1)[0])
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()

    path = "/bedrock/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/converse?a=b%2Fc"
    async for url in _serve(handler):
        assert await _exchange(name, url + path) == [b"{}"]
    assert seen == [f"POST {path} HTTP/1.1".encode()]


async def test_the_gateways_own_upstreams_send_exactly_the_given_headers() -> None:
    # No python-httpx or aiohttp user-agent, no accept or accept-encoding the client did not send:
    # both implementations put the same request on the wire.
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            heads.append(await _read_request(reader))
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()

    headers = [(b"content-type", b"application/json"), (b"x-repeat", b"1"), (b"x-repeat", b"2")]
    async for url in _serve(handler):
        for name in ("aiohttp", "httpx"):
            assert await _exchange(name, url + "/v1/chat/completions?x=1", headers=headers) == [b"{}"]
    port = url.rsplit(":", 1)[1].encode()
    expected = (
        b"POST /v1/chat/completions?x=1 HTTP/1.1",
        sorted([*headers, (b"host", b"127.0.0.1:" + port), (b"content-length", b"2")]),
    )
    assert [_parsed(head) for head in heads] == [expected, expected]


async def test_a_callers_own_client_keeps_its_defaults() -> None:
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()

    async for url in _serve(handler):
        async with _upstream("client", headers={"x-team": "search"}) as upstream:
            response = await upstream.send("POST", url, [], b"{}", timeouts=TIMEOUTS, provider="p")
            await response.aclose()
    assert (b"x-team", b"search") in _parsed(heads[0])[1]


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_a_cookie_set_upstream_is_never_sent_again(name: str) -> None:
    # The gateway serves many clients: a session cookie one got must not go upstream for the next.
    cookies: list[bytes | None] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            fields = dict(_parsed(await _read_request(reader))[1])
            cookies.append(fields.get(b"cookie"))
            writer.write(b"HTTP/1.1 200 OK\r\nset-cookie: session=user-a; Path=/\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()

    async for url in _serve(handler):
        by_name = url.replace("127.0.0.1", "localhost")  # cookie jars keep no cookie of an IP address host
        async with _upstream(name) as upstream:
            for _ in range(2):
                response = await upstream.send("POST", by_name + "/v1", [], b"{}", timeouts=TIMEOUTS, provider="p")
                assert response.headers["set-cookie"] == "session=user-a; Path=/"  # relayed, never stored
                assert [chunk async for chunk in response.chunks()] == [b"{}"]
                await response.aclose()
    assert cookies == [None, None]


async def test_a_callers_own_cookies_are_still_sent() -> None:
    seen: list[bytes | None] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(dict(_parsed(await _read_request(reader))[1]).get(b"cookie"))
        writer.write(b"HTTP/1.1 200 OK\r\nset-cookie: other=1\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()

    async for url in _serve(handler):
        async with httpx.AsyncClient(cookies={"team": "search"}) as client:
            upstream = upstream_of(client, Config())
            response = await upstream.send("POST", url, [], b"{}", timeouts=TIMEOUTS, provider="p")
            await response.aclose()
            assert dict(client.cookies) == {"team": "search"}
    assert seen == [b"team=search"]


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
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
        async with _upstream(name) as upstream:
            for _ in range(3):
                response = await upstream.send("POST", url, [], b"{}", timeouts=TIMEOUTS, provider="p")
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
                assert [chunk async for chunk in response.chunks()] == [b"{}"]
                await response.aclose()
    assert connections == 1  # a body read to its end gives the connection back to the pool


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_request_deadline_bounds_the_wait_for_headers(name: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(10)

    async for url in _serve(handler):
        async with _upstream(name) as upstream:
            with pytest.raises(UpstreamTimeout, match="request deadline"):
                await upstream.send("POST", url, [], b"{}", timeouts=TIMEOUTS, provider="p", deadline_s=0.2)


@pytest.mark.parametrize("name", ["httpx", "client"])
async def test_waiting_for_a_full_pool_is_not_a_provider_timeout(name: str) -> None:
    # A small pool: the wait for a connection is the gateway's capacity (UpstreamPoolFull), never the
    # provider's connect timeout that would cool it down.
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        await writer.drain()
        await release.wait()
        writer.write(b"{}")
        await writer.drain()

    options: dict[str, object] = (
        {"limits": httpx.Limits(max_connections=1)} if name == "client" else {"max_connections": 1}
    )
    timeouts = httpx.Timeout(5.0, pool=0.05)
    async for url in _serve(handler):
        async with _upstream(name, **options) as upstream:
            held = await upstream.send("POST", url, [], b"", timeouts=timeouts, provider="p")
            with pytest.raises(UpstreamPoolFull, match="no free connection") as raised:
                await upstream.send("POST", url, [], b"", timeouts=timeouts, provider="p")
            assert not isinstance(raised.value, UpstreamError)
            release.set()
            assert [chunk async for chunk in held.chunks()] == [b"{}"]
            await held.aclose()


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_header_bytes_arrive_exactly_as_given(name: str) -> None:
    # What a signer (Bedrock's SigV4) signed is what the provider gets: aiohttp re-encoded latin-1 text.
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()

    value = "application/json; charset=ünïcode".encode()
    async for url in _serve(handler):
        assert await _exchange(name, url, headers=[(b"content-type", value)]) == [b"{}"]
    assert len(heads) == 1 and b"\r\ncontent-type: " + value + b"\r\n" in heads[0].lower()


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
async def test_what_a_signer_changed_is_what_is_sent(name: str) -> None:
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads.append(await _read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
        await writer.drain()

    def sign(request: httpx.Request) -> None:
        request.url = request.url.copy_remove_param("key")
        request.headers["authorization"] = "AWS4-HMAC-SHA256 Credential=x"

    async for url in _serve(handler):
        method, signed_url, headers, body = signed(
            "POST", url + "/model/m-v1%3A0/converse?key=client&a=b", [(b"content-type", b"x")], b"{}", sign
        )
        async with _upstream(name) as upstream:
            response = await upstream.send(method, signed_url, headers, body, timeouts=TIMEOUTS, provider="p")
            await response.aclose()
    line, fields = _parsed(heads[0])
    assert line == b"POST /model/m-v1%3A0/converse?a=b HTTP/1.1"
    assert (b"authorization", b"AWS4-HMAC-SHA256 Credential=x") in fields and (b"content-length", b"2") in fields
