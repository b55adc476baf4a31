"""Serve one benchmark target under uvicorn, with identical server settings for every target.

    python benchmarks/serve.py bare-httpx    --port 9301 --upstream http://127.0.0.1:9100
    python benchmarks/serve.py bare-aiohttp  --port 9302 --upstream http://127.0.0.1:9100
    python benchmarks/serve.py gateway       --port 9303 --config gateway.json
    python benchmarks/serve.py otlp-receiver --port 9304
    python benchmarks/serve.py fake          --port 9100 --chunks 20

Every target runs in one process, one worker, no access log, lifespan on; ``--loop``/``--http``
choose uvicorn's event loop and HTTP parser (``auto`` takes uvloop and httptools when installed).
uvicorn binds the socket itself, so asyncio sets TCP_NODELAY on every connection.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

TARGETS = ("bare-httpx", "bare-aiohttp", "gateway", "otlp-receiver", "fake")


def build_app(args: argparse.Namespace) -> Any:
    """The ASGI app of one target."""
    if args.target in ("bare-httpx", "bare-aiohttp"):
        from bare_proxy import proxy_for

        return proxy_for(args.target, args.upstream)
    if args.target == "gateway":
        from llm_obs_middleware.config import Config
        from llm_obs_middleware.gateway import create_gateway

        client = None
        if args.transport != "httpx" or args.no_cookies:
            client = _experimental_client(args.transport, no_cookies=args.no_cookies)
        return create_gateway(Config.from_file(args.config), client=client)
    if args.target == "fake":
        from llm_obs_middleware.testing import FakeProviderConfig, create_fake_provider

        return create_fake_provider(FakeProviderConfig(chunks=args.chunks))
    from otlp_receiver import OTLPReceiver

    return OTLPReceiver()


def _experimental_client(transport_name: str, *, no_cookies: bool) -> Any:
    """A client for the gateway's ``client=`` seam, to measure what a change in ``upstream.py`` would buy.

    ``httpx-aiohttp``: the httpx API over an aiohttp transport. ``no_cookies``: a client without a cookie
    jar (httpx otherwise runs ``http.cookiejar`` over every upstream response; a proxy must not keep
    upstream cookies anyway). Same limits and timeouts as ``upstream.build_client``.
    """
    import httpx

    limits = httpx.Limits(max_connections=512, max_keepalive_connections=128, keepalive_expiry=30.0)
    transport: httpx.AsyncBaseTransport | None = None
    if transport_name == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(limits=limits, trust_env=False)

    class _NoCookies(httpx.Cookies):
        def extract_cookies(self, response: httpx.Response) -> None:
            return None

        def set_cookie_header(self, request: httpx.Request) -> None:
            return None

    no_jar = _NoCookies()

    class _NoCookieClient(httpx.AsyncClient):
        @property
        def cookies(self) -> httpx.Cookies:
            return no_jar

        @cookies.setter
        def cookies(self, value: Any) -> None:
            return None

    cls = _NoCookieClient if no_cookies else httpx.AsyncClient
    return cls(
        transport=transport,
        limits=limits,
        timeout=httpx.Timeout(120.0, connect=5.0),
        follow_redirects=False,
        trust_env=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", default="http://127.0.0.1:9100", help="bare proxies: upstream root URL")
    parser.add_argument("--config", help="gateway: config file")
    parser.add_argument(
        "--transport", default="httpx", choices=("httpx", "httpx-aiohttp"), help="gateway: upstream transport"
    )
    parser.add_argument("--no-cookies", action="store_true", help="gateway: upstream client without a cookie jar")
    parser.add_argument("--chunks", type=int, default=20, help="fake: content chunks per answer")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"))
    parser.add_argument("--http", default="auto", choices=("auto", "h11", "httptools"))
    args = parser.parse_args()

    import uvicorn

    uvicorn.run(
        build_app(args),
        host="127.0.0.1",
        port=args.port,
        loop=args.loop,
        http=args.http,
        ws="none",
        lifespan="on",
        access_log=False,
        log_level="warning",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
